//! Runs model-written Python against a problem's tests in a separate, limited process.
//!
//! What it does: a fresh temporary directory as the working directory (removed afterwards);
//! `python3 -I` (no user site, no `PYTHON*` variables); a new network namespace when
//! `unshare --net` works here (then there is no network at all; [`Sandbox::describe`] says
//! which); resource limits set before the code runs — address space ([`Limits::memory_bytes`],
//! so a 10 GB allocation is a `MemoryError`), CPU seconds, file size, no core dumps; a guard
//! that disables `os.fork`/`system`/`exec*`/`kill`, file removal and renaming,
//! `subprocess.Popen`, `socket.socket`, and `open` for writing outside the directory; and a
//! wall-clock timeout after which the whole process group is killed. Output is written to
//! files, not pipes, and only its first kilobytes are read.
//!
//! What it does not: it is not a security boundary against code written to escape — Python's
//! guards can be undone from inside (`ctypes`, re-importing modules), and without the network
//! namespace a socket can be rebuilt. It protects the machine from the mistakes models make
//! (loops, huge allocations, stray writes, forks), as HumanEval's own `execution.py` does,
//! plus the OS limits. Run suites of untrusted models inside a container or VM.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Limits of one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            file_bytes: 10 << 20,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Passed,
    /// The tests failed or the code raised: the last line of its error output.
    Failed(String),
    TimedOut,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        *self == Verdict::Passed
    }
}

/// A Python interpreter and the isolation available here.
#[derive(Clone, Debug)]
pub struct Sandbox {
    python: String,
    net_namespace: bool,
}

const GUARD: &str = r#"
import builtins as _b, os as _os, resource as _r, shutil as _sh, socket as _so, subprocess as _sp
def _limit(k, v):
    try:
        _r.setrlimit(k, (v, v))
    except (ValueError, OSError):
        pass
_limit(_r.RLIMIT_AS, __MEM__)
_limit(_r.RLIMIT_CPU, __CPU__)
_limit(_r.RLIMIT_FSIZE, __FSIZE__)
_limit(_r.RLIMIT_CORE, 0)
_here = _os.path.realpath(_os.getcwd())
_open = _b.open
def _guarded_open(file, mode="r", *a, **k):
    if any(c in mode for c in "wax+"):
        p = _os.path.realpath(_os.fsdecode(file) if not isinstance(file, int) else _here)
        if not p.startswith(_here + _os.sep):
            raise PermissionError("tokenfab sandbox: writing outside the work directory: " + p)
    return _open(file, mode, *a, **k)
_b.open = _guarded_open
for _n in ["fork", "forkpty", "system", "popen", "kill", "killpg", "remove", "unlink", "rmdir",
           "removedirs", "rename", "renames", "replace", "truncate", "chmod", "chown", "putenv",
           "setuid", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
           "spawnv", "spawnve", "spawnl", "posix_spawn", "posix_spawnp"]:
    if hasattr(_os, _n):
        setattr(_os, _n, None)
_sp.Popen = None
_sh.rmtree = None
_sh.move = None
_so.socket = None
del _r, _sh, _so, _sp, _limit
"#;

impl Sandbox {
    /// Finds `python3` and whether `unshare --net` works here.
    pub fn new() -> Result<Sandbox, String> {
        let python = "python3".to_string();
        let ok = |cmd: &mut Command| {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(Command::new(&python).args(["-I", "-c", "import resource"])) {
            return Err("tokenfab eval needs python3 (with the resource module) on PATH".into());
        }
        let net_namespace = ok(Command::new("unshare").args(["--net", "--map-root-user", "true"]))
            || ok(Command::new("unshare").args(["--net", "true"]));
        Ok(Sandbox {
            python,
            net_namespace,
        })
    }

    /// What the sandbox does here, for reports.
    pub fn describe(&self) -> String {
        format!(
            "python3 -I in a temporary directory; rlimits on memory, CPU, file size; fork/exec/socket/remove and writes outside the directory disabled in Python; {}",
            if self.net_namespace {
                "no network (own network namespace)"
            } else {
                "network NOT isolated (unshare --net unavailable)"
            }
        )
    }

    pub fn isolates_network(&self) -> bool {
        self.net_namespace
    }

    /// Runs `program`, then `test`, then `check(entry_point)`.
    pub fn check(&self, program: &str, test: &str, entry_point: &str, limits: Limits) -> Verdict {
        match self.run(
            &format!("{program}\n\n{test}\n\ncheck({entry_point})\n"),
            limits,
        ) {
            Ok(v) => v,
            Err(e) => Verdict::Failed(format!("sandbox error: {e}")),
        }
    }

    /// Runs a Python program under the guard and the limits.
    pub fn run(&self, code: &str, limits: Limits) -> Result<Verdict, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let cpu = limits.timeout.as_secs().max(1) + 1;
        let guard = GUARD
            .replace("__MEM__", &limits.memory_bytes.to_string())
            .replace("__CPU__", &cpu.to_string())
            .replace("__FSIZE__", &limits.file_bytes.to_string());
        let main = dir.path().join("main.py");
        std::fs::write(&main, format!("{guard}\n{code}")).map_err(|e| e.to_string())?;
        let out = dir.path().join("out.txt");
        let err = dir.path().join("err.txt");
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| e.to_string());
        let mut cmd = if self.net_namespace {
            let mut c = Command::new("unshare");
            c.args(["--net", "--map-root-user", "--"]).arg(&self.python);
            c
        } else {
            Command::new(&self.python)
        };
        cmd.args(["-I", "main.py"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&err)?);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start python3: {e}"))?;
        let t0 = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| e.to_string())? {
                Some(s) => break Some(s),
                None if t0.elapsed() > limits.timeout => break None,
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let Some(status) = status else {
            // the whole group: anything it started goes too
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Verdict::TimedOut);
        };
        if status.success() {
            return Ok(Verdict::Passed);
        }
        let mut buf = Vec::new();
        if let Ok(f) = std::fs::File::open(&err) {
            let _ = f.take(8192).read_to_end(&mut buf);
        }
        let text = String::from_utf8_lossy(&buf);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        Ok(Verdict::Failed(if last.is_empty() {
            format!("exit status {status}")
        } else {
            last
        }))
    }
}
