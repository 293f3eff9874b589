//! The program to test, taken out of a model's answer: an instruct model answers in prose
//! with a fenced code block (the block that defines the entry point, else the first one); a
//! base model continues the prompt (the completion is cut where the function ends: at the next
//! top-level statement). The prompt's imports are put first, since answers often drop them.

/// The Python program for `answer` to problem `prompt` with function `entry_point`.
pub fn program(prompt: &str, entry_point: &str, answer: &str) -> String {
    let def = format!("def {entry_point}");
    let code = match fenced_blocks(answer) {
        blocks if !blocks.is_empty() => blocks
            .iter()
            .find(|b| b.contains(&def))
            .unwrap_or(&blocks[0])
            .clone(),
        _ if answer.contains(&def) => answer.to_string(),
        // a completion of the prompt itself
        _ => return format!("{prompt}{}", completion_body(answer)),
    };
    let imports: String = prompt
        .lines()
        .filter(|l| l.starts_with("import ") || l.starts_with("from "))
        .map(|l| format!("{l}\n"))
        .collect();
    if code.contains(&def) {
        format!("{imports}{code}")
    } else {
        // a block with only the body, or helpers: complete the prompt's function with it
        format!("{prompt}{code}")
    }
}

/// The contents of the Markdown code fences of `text`, in order (an unclosed last fence runs
/// to the end). A first line that only names the language (the fence's tag written on the
/// next line: "```" then "python", seen from the 0.5B model) is not code and is dropped.
pub fn fenced_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(tag) = t.strip_prefix("```") {
            match cur.take() {
                // "```markdown" then "```python": the inner fence opens the block
                Some(b) if b.is_empty() && !tag.trim().is_empty() => cur = Some(b),
                Some(b) => out.push(b),
                None => cur = Some(String::new()),
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    if let Some(b) = cur {
        if !b.trim().is_empty() {
            out.push(b);
        }
    }
    out.into_iter().map(drop_language_line).collect()
}

fn drop_language_line(block: String) -> String {
    let first = block.lines().next().unwrap_or("").trim();
    if matches!(first, "python" | "python3" | "py" | "Python") {
        block
            .split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_string())
    } else {
        block
    }
}

/// A base model's continuation of the function body, up to the first line that is not
/// indented (the next top-level statement).
fn completion_body(answer: &str) -> String {
    let mut out = String::new();
    for (i, line) in answer.split_inclusive('\n').enumerate() {
        let top = !line.starts_with(' ') && !line.starts_with('\t') && !line.trim().is_empty();
        if i > 0 && top {
            break;
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str =
        "from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n";

    #[test]
    fn fenced_code_that_defines_the_function_wins() {
        // the shape of an instruct model's answer (real recorded answers are checked in
        // tests/eval_sandbox.rs)
        let answer = "Here is the function:\n\n```python\ndef add(xs: List[int]) -> int:\n    return sum(xs)\n```\n\nIt sums the list.\n\n```python\nprint(add([1, 2]))\n```";
        let p = program(PROMPT, "add", answer);
        assert_eq!(
            p,
            "from typing import List\ndef add(xs: List[int]) -> int:\n    return sum(xs)\n"
        );
    }

    #[test]
    fn prose_around_code_without_fences_and_bodies() {
        // the whole answer is code with the definition
        let p = program(PROMPT, "add", "def add(xs):\n    return sum(xs)\n");
        assert!(p.ends_with("def add(xs):\n    return sum(xs)\n"));
        // a base model's completion: the body, cut at the next top-level statement
        let p = program(PROMPT, "add", "    return sum(xs)\n\n\nprint(add([1]))\n");
        assert_eq!(p, format!("{PROMPT}    return sum(xs)\n\n\n"));
        // a fenced body only: appended to the prompt
        let p = program(PROMPT, "add", "```python\n    return sum(xs)\n```");
        assert_eq!(p, format!("{PROMPT}    return sum(xs)\n"));
        // no code at all: the prompt with prose after it, which fails its tests
        let p = program(PROMPT, "add", "I cannot help with that.");
        assert!(p.starts_with(PROMPT));
        // an unclosed fence runs to the end
        assert_eq!(fenced_blocks("```py\nx = 1\ny = 2"), vec!["x = 1\ny = 2\n"]);
        assert!(fenced_blocks("no code").is_empty());
        // the tag on its own line (the 0.5B model, through llama-server and ours)
        assert_eq!(fenced_blocks("```\npython\nx = 1\n```"), vec!["x = 1\n"]);
        // a fence inside a fence (seen from the 0.5B model on HumanEval/10): the inner one
        // opens the code
        assert_eq!(
            fenced_blocks("```markdown\n```python\ndef f():\n    pass\n```"),
            vec!["def f():\n    pass\n"]
        );
    }
}
