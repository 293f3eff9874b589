"""The official `openai` Python client against `tokenfab serve` (run by tests/openai_client.rs,
which starts the server and passes its URL and API key). Exits non-zero on the first failed
check; prints one line per check."""
import json
import sys

import openai

url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=url + "/v1", api_key=key)


def check(what, cond, detail=""):
    if not cond:
        print(f"FAIL {what}: {detail}")
        sys.exit(1)
    print(f"ok {what}")


models = client.models.list()
model = models.data[0].id
check("models.list", model == "gemma-3-270m-q4_k_m", model)

r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say hello."}],
    max_tokens=8,
    temperature=0,
)
text = r.choices[0].message.content
check("chat: text", isinstance(text, str) and len(text) > 0, repr(text))
check("chat: finish_reason", r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
u = r.usage
check("chat: usage counts", u.prompt_tokens == 12 and 1 <= u.completion_tokens <= 8
      and u.total_tokens == u.prompt_tokens + u.completion_tokens, str(u))
cost = (u.model_extra or {}).get("cost") or {}
check("chat: usage.cost", cost.get("joules", 0) > 0 and cost.get("energy_source") == "estimated:model"
      and cost.get("usd", 0) > 0, json.dumps(cost))

# streamed, with the usage chunk: the same greedy text
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say hello."}],
    max_tokens=8,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage is not None:
        usage = chunk.usage
check("chat stream: same text", "".join(parts) == text, f"{''.join(parts)!r} vs {text!r}")
check("chat stream: usage chunk", usage is not None and usage.completion_tokens == u.completion_tokens, str(usage))

# legacy completions with logprobs
c = client.completions.create(model=model, prompt="Once upon a time", max_tokens=5,
                              temperature=0, logprobs=2, extra_body={"ignore_eos": True})
lp = c.choices[0].logprobs
check("completions: text and logprobs", c.usage.completion_tokens == 5 and len(lp.tokens) == 5
      and len(lp.top_logprobs[0]) == 2 and all(x <= 0 for x in lp.token_logprobs), str(lp))

# a seed reproduces a sampled answer
def sampled():
    return client.completions.create(model=model, prompt="The weather", max_tokens=8,
                                     temperature=1.0, seed=7).choices[0].text
check("seed", sampled() == sampled())

# a budget ends the answer with finish_reason length and says which
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a story."}],
                                   max_tokens=64, temperature=0,
                                   extra_body={"max_energy_j": cost["joules"] / 4, "ignore_eos": True})
check("budget", r.choices[0].finish_reason == "length" and r.usage.completion_tokens < 64
      and (r.choices[0].model_extra or {}).get("stop_budget") == "max_energy_j", str(r))

# errors arrive as the client's exceptions
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check("unknown model", False, "no error")
except openai.NotFoundError as e:
    check("unknown model", e.status_code == 404)
try:
    client.chat.completions.create(model=model, messages=[], max_tokens=4)
    check("empty messages", False, "no error")
except openai.BadRequestError as e:
    check("empty messages", e.status_code == 400 and "messages" in str(e))
bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
try:
    bad.models.list()
    check("wrong key", False, "no error")
except openai.AuthenticationError as e:
    check("wrong key", e.status_code == 401)
print("all ok")
