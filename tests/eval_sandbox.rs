//! The sandbox that runs model-written code (`tokenfab eval`): a correct solution passes, a
//! wrong one fails with its error; a loop, a 10 GB allocation, a fork, a socket, a write
//! outside its directory and a deletion are all counted as failures, within the time limit,
//! and leave the machine as it was.

use std::time::{Duration, Instant};
use tokenfab::eval::tasks::sandbox::{Limits, Sandbox, Verdict};

const TEST: &str = "def check(candidate):\n    assert candidate(2, 3) == 5\n";

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(3),
        ..Limits::default()
    }
}

fn check(sb: &Sandbox, body: &str) -> (Verdict, Duration) {
    let t = Instant::now();
    let v = sb.check(&format!("def add(a, b):\n{body}"), TEST, "add", limits());
    (v, t.elapsed())
}

#[test]
fn model_code_passes_fails_and_cannot_harm_the_machine() {
    let sb = Sandbox::new().unwrap();
    eprintln!("{}", sb.describe());
    assert_eq!(check(&sb, "    return a + b\n").0, Verdict::Passed);
    match check(&sb, "    return a - b\n").0 {
        Verdict::Failed(m) => assert!(m.contains("AssertionError"), "{m}"),
        v => panic!("{v:?}"),
    }
    // an endless loop: killed at the wall-clock limit
    let (v, took) = check(&sb, "    while True:\n        pass\n");
    assert_eq!(v, Verdict::TimedOut);
    assert!(took < Duration::from_secs(6), "{took:?}");
    // 10 GB: the address-space limit turns it into a MemoryError
    match check(&sb, "    x = bytearray(10 * 1024 ** 3)\n    return a + b\n").0 {
        Verdict::Failed(m) => assert!(m.contains("MemoryError"), "{m}"),
        v => panic!("{v:?}"),
    }
    // a fork, a subprocess, a socket
    for body in [
        "    import os\n    os.fork()\n    return a + b\n",
        "    import subprocess\n    subprocess.run(['true'])\n    return a + b\n",
        "    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return a + b\n",
    ] {
        assert!(matches!(check(&sb, body).0, Verdict::Failed(_)), "{body}");
    }
    // writing or deleting outside its directory
    let outside = std::env::temp_dir().join(format!("tf-sandbox-{}", std::process::id()));
    std::fs::write(&outside, "keep").unwrap();
    let p = outside.display();
    for body in [
        format!("    open('{p}', 'w').write('x')\n    return a + b\n"),
        format!("    import os\n    os.remove('{p}')\n    return a + b\n"),
        format!("    import shutil\n    shutil.rmtree('{p}')\n    return a + b\n"),
    ] {
        assert!(matches!(check(&sb, &body).0, Verdict::Failed(_)), "{body}");
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    std::fs::remove_file(&outside).unwrap();
    // its own directory is writable
    let body = "    open('scratch.txt', 'w').write('ok')\n    return a + b\n";
    assert_eq!(check(&sb, body).0, Verdict::Passed);
}

/// Real answers (Qwen2.5-Coder-0.5B-Instruct, greedy, HumanEval/0-3, recorded in
/// `tests/data/eval/answers_qwen0.5b.json` with the command that made them): the program taken
/// out of each defines the entry point, and the sandbox gives each the verdict it got when
/// recorded (3 passed, HumanEval/1 failed).
#[test]
fn recorded_answers_extract_and_check_as_recorded() {
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/eval/answers_qwen0.5b.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let models = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let problems = tokenfab::eval::tasks::suite::load(&models.join("HumanEval.jsonl.gz")).unwrap();
    assert_eq!(problems.len(), 164);
    let sb = Sandbox::new().unwrap();
    for a in rec["answers"].as_array().unwrap() {
        let id = a["task_id"].as_str().unwrap();
        let p = problems.iter().find(|p| p.task_id == id).unwrap();
        let answer = a["answer"].as_str().unwrap();
        assert!(answer.contains("```"), "{id}: a fenced answer");
        let program = tokenfab::eval::tasks::extract::program(&p.prompt, &p.entry_point, answer);
        assert!(program.contains(&format!("def {}", p.entry_point)), "{id}");
        assert!(!program.contains("```"), "{id}: {program}");
        let v = sb.check(&program, &p.test, &p.entry_point, Limits::default());
        assert_eq!(v.passed(), a["passed"].as_bool().unwrap(), "{id}: {v:?}");
    }
}
