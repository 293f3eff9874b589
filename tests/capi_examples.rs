//! The embedding examples, built and run as a user would, against the built library
//! (`target/release/libtokenfab.so`) and the checked-in header: `examples/c/chat.c` compiled
//! with `cc -Wall -Wextra -Werror -pedantic`, its replies equal to `tokenfab run --chat`'s, the
//! second turn reusing the first's cache; `examples/python/tokenfab_ctypes.py` equal to
//! `tokenfab run`; and the C example under valgrind: no invalid reads or writes, nothing
//! definitely or indirectly lost, and the engine's memory (tens of MB) freed at close.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory the shared library is in (`target/release`), built first: `cargo test`
/// builds the crate as an rlib only, so the test builds the `cdylib` itself (a no-op after
/// `cargo build --release`), and never runs against a stale one.
fn lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test>
        let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target = dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--lib", "--manifest-path"])
            .arg(root().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let out = build.output().unwrap();
        assert!(
            out.status.success(),
            "cannot build the library: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = dir.join(format!("libtokenfab.{}", std::env::consts::DLL_EXTENSION));
        assert!(lib.exists(), "{} is missing", lib.display());
        dir
    })
    .clone()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/c/chat.c` compiled against `include/tokenfab.h` and the shared library (or,
/// with `static_lib`, the static one).
fn build_chat(dir: &Path, static_lib: bool) -> PathBuf {
    let out = dir.join(if static_lib { "chat-static" } else { "chat" });
    let lib = lib_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("examples/c/chat.c"));
    if static_lib {
        // as the header says: the archive and the system libraries Rust's std needs
        cmd.arg(lib.join("libtokenfab.a"))
            .args(["-lpthread", "-ldl", "-lm"]);
    } else {
        cmd.arg("-L")
            .arg(&lib)
            .arg("-ltokenfab")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let status = cmd
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "examples/c/chat.c does not compile");
    out
}

/// Runs `cmd` with `stdin`, returning stdout; panics with stderr on failure.
fn run_with_input(mut cmd: Command, stdin: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed ({}): {}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `tokenfab run` greedy on the default model, stdout without the final newline.
fn tokenfab_run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenfab"))
        .args(["run", "--temp", "0", "-t", "2", "--backend", "cpu", "-m"])
        .arg(common::model(common::GEMMA))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

#[test]
fn c_chat_example_streams_a_conversation_like_tokenfab_run_chat() {
    let dir = tempfile::tempdir().unwrap();
    let q1 = "What is the capital of France?";
    let chat = |static_lib: bool, input: &str| {
        let mut cmd = Command::new(build_chat(dir.path(), static_lib));
        cmd.arg(common::model(common::GEMMA)).arg("24");
        run_with_input(cmd, input)
    };
    let out = chat(false, &format!("{q1}\nAnd of Italy?\n"));
    // each turn: the reply, then "\n[N prompt tokens (R reused), G generated | ...]"
    let re = regex::Regex::new(
        r"\n\[(\d+) prompt tokens \((\d+) reused\), (\d+) generated \| [\d.]+ tok/s \| [\d.]+ MB read \| [\d.]+ J, \$[\d.e+-]+ \(estimated:model\)\]\n",
    )
    .unwrap();
    let turns: Vec<_> = re.captures_iter(&out).collect();
    assert_eq!(turns.len(), 2, "two turns expected in:\n{out}");
    let reply1 = &out[..turns[0].get(0).unwrap().start()];
    assert_eq!(reply1, tokenfab_run(&["--chat", "-n", "24", q1]));
    let n = |c: &regex::Captures, i: usize| c[i].parse::<usize>().unwrap();
    assert_eq!(n(&turns[0], 2), 0);
    // the second prompt holds the first turn: what the cache holds of it is not run again
    assert!(n(&turns[1], 2) > n(&turns[0], 1), "{out}");
    assert!(n(&turns[1], 1) > n(&turns[1], 2), "{out}");
    // linked with the static library instead: the same first turn
    let out = chat(true, &format!("{q1}\n"));
    assert!(out.starts_with(&format!("{reply1}\n[")), "{out}");
}

#[test]
fn rust_cost_meter_example_prints_each_tokens_cost() {
    let lib = lib_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--example", "cost_meter", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(lib.parent().unwrap());
    if lib.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "cannot build the example"
    );
    let mut cmd = Command::new(lib.join("examples/cost_meter"));
    cmd.arg(common::model(common::GEMMA))
        .arg("The capital of France is");
    let out = run_with_input(cmd, "");
    // one line per generated token: id, text, ms, MB, GFLOP, J, $
    let re = regex::Regex::new(
        r"(?m)^token +\d+ +.* +[\d.]+ ms +[\d.]+ MB +[\d.]+ GFLOP +[\d.]+ J +\$[\d.e+-]+$",
    )
    .unwrap();
    assert_eq!(re.find_iter(&out).count(), 16, "{out}");
    assert!(
        out.contains("J, $") && out.contains("(estimated:model)"),
        "{out}"
    );
}

#[test]
fn python_ctypes_example_streams_and_prints_the_cost() {
    let prompt = "The capital of France is";
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("examples/python/tokenfab_ctypes.py"))
        .arg(common::model(common::GEMMA))
        .arg(prompt)
        .arg("16")
        .env(
            "TOKENFAB_LIB",
            lib_dir().join(format!("libtokenfab.{}", std::env::consts::DLL_EXTENSION)),
        );
    let out = run_with_input(cmd, "");
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), tokenfab_run(&["-n", "16", prompt]));
    let rest: Vec<&str> = lines.collect();
    assert!(
        rest[0].starts_with("6 prompt + 16 generated tokens"),
        "{out}"
    );
    let re = regex::Regex::new(r"^\d\.\d{4} J/token generated; \$\d+\.\d{4}/Mtok").unwrap();
    assert!(re.is_match(rest[1]), "{out}");
}

#[test]
fn c_example_under_valgrind_has_no_errors_and_frees_the_engine() {
    let valgrind = Command::new("valgrind").arg("--version").output();
    assert!(
        valgrind.is_ok_and(|o| o.status.success()),
        "valgrind is missing: `scripts/ensure-valgrind.sh` (run by `make test`) installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let chat = build_chat(dir.path(), false);
    let log = dir.path().join("valgrind.log");
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        "--error-exitcode=99",
    ])
    .arg(format!("--log-file={}", log.display()))
    .arg(&chat)
    .arg(common::model(common::GEMMA))
    .arg("2");
    let out = run_with_input(cmd, "Hi\nBye\n");
    let report = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.matches(" generated | ").count(), 2, "{out}");
    assert!(report.contains("ERROR SUMMARY: 0 errors"), "{report}");
    // what is still reachable at exit is the runtime's (rayon's thread pool), not the
    // engine: its tokenizer and KV cache alone are tens of MB
    let re = regex::Regex::new(r"still reachable: ([\d,]+) bytes").unwrap();
    let reachable = re
        .captures(&report)
        .map_or(0, |c| c[1].replace(',', "").parse::<u64>().unwrap());
    assert!(
        reachable < 2_000_000,
        "{reachable} bytes still reachable:\n{report}"
    );
}

#[test]
fn readme_c_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let at = readme
        .find("## Embedding")
        .expect("README has an Embedding section");
    let block = readme[at..]
        .split("```c\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```c block under Embedding");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.c");
    std::fs::write(&src, block).unwrap();
    let exe = dir.path().join("app");
    let lib = lib_dir();
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .arg("-L")
        .arg(&lib)
        .arg("-ltokenfab")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "the README's C example does not compile");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(root());
    let out = run_with_input(cmd, "");
    // the generated text, then one line of totals
    let (text, stats) = out.trim_end_matches('\n').rsplit_once('\n').unwrap();
    assert_eq!(
        text,
        tokenfab_run(&["-n", "128", "The capital of France is"])
    );
    assert!(
        stats.contains(" tokens, ") && stats.contains("J/token"),
        "{out}"
    );
}
