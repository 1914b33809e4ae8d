//! Test peers built from Go modules by `testground/<peer>/build.sh` (crane, oras, regctl, distribution v3,
//! …), and the runner that executes the command blocks of a `docs/<client>.md` page.
//!
//! Peers are built only when asked (`scripts/test.sh --all`): a test whose peer is missing prints one line
//! naming its tier and the command that builds it, and returns without failing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Output;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Where `testground/lib.sh` caches built peers (`TESTGROUND_CACHE`, default
/// `/var/cache/connectors-testground`).
pub fn cache_root() -> PathBuf {
    std::env::var_os("TESTGROUND_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/connectors-testground"))
}

/// The pinned `VERSION=` of `testground/<peer>/build.sh`.
pub fn peer_version(peer: &str) -> String {
    let script = repo_root().join("testground").join(peer).join("build.sh");
    let text = std::fs::read_to_string(&script)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", script.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("VERSION="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{} has no VERSION= line", script.display()))
}

/// The cache folder of a built peer (`<cache>/<peer>-<VERSION>`), or `None` after printing one line that
/// names the tier and how to build and run it.
pub fn peer_dir(tier: &str, peer: &str) -> Option<PathBuf> {
    let version = peer_version(peer);
    let dir = cache_root().join(format!("{peer}-{version}"));
    if dir.join(".complete").is_file() {
        return Some(dir);
    }
    println!(
        "{tier}: skipped, test peer {peer}-{version} is not built; `scripts/test.sh --all` builds and runs this tier \
         (or `testground/{peer}/build.sh` alone)"
    );
    None
}

/// The `sh` command blocks of a Markdown page, grouped by their `## ` heading (in page order).
pub fn sh_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        match &mut block {
            Some(text) => {
                if line.trim_start().starts_with("```") {
                    let text = block.take().unwrap_or_default();
                    match out.last_mut() {
                        Some((h, t)) if *h == heading => t.push_str(&text),
                        _ => out.push((heading.clone(), text)),
                    }
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            None => {
                if let Some(h) = line.strip_prefix("## ") {
                    heading = h.trim().to_owned();
                } else if matches!(line.trim(), "```sh" | "```bash" | "```shell") {
                    block = Some(String::new());
                }
            }
        }
    }
    out
}

/// Runs the command blocks of a docs page, section by section, as a user would.
///
/// Each section (all `sh` blocks under one `## ` heading) runs in a fresh `bash -euo pipefail` in `work`,
/// with literal replacements applied (e.g. `/mnt/connectors` → the rendered folder,
/// `registry.example.com` → `registry.test:PORT`), a clean environment (no proxy variables, no
/// `SSL_CERT_FILE`, `HOME` in `work`), `PATH` extended with `extra_path`, and `env`.
#[derive(Debug)]
pub struct DocRunner {
    page: PathBuf,
    sections: Vec<(String, String)>,
    work: PathBuf,
    replace: Vec<(String, String)>,
    env: BTreeMap<String, String>,
    path: Vec<PathBuf>,
    timeout: Duration,
    ran: Vec<String>,
}

impl DocRunner {
    /// Reads `docs/<page>` of the repository.
    pub fn new(page: &str, work: &Path) -> Self {
        let path = repo_root().join("docs").join(page);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let sections = sh_blocks(&text);
        assert!(!sections.is_empty(), "{} has no sh blocks", path.display());
        std::fs::create_dir_all(work.join("home")).expect("create the doc runner's HOME");
        DocRunner {
            page: path,
            sections,
            work: work.to_path_buf(),
            replace: Vec::new(),
            env: BTreeMap::new(),
            path: Vec::new(),
            timeout: Duration::from_secs(300),
            ran: Vec::new(),
        }
    }

    /// Replaces `from` by `to` in every block (in the order given).
    pub fn replace(mut self, from: &str, to: &str) -> Self {
        self.replace.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Sets an environment variable for every section.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.insert(
            key.to_owned(),
            value.as_ref().to_string_lossy().into_owned(),
        );
        self
    }

    /// Prepends a folder to `PATH`.
    pub fn path(mut self, dir: &Path) -> Self {
        self.path.push(dir.to_path_buf());
        self
    }

    /// The headings of the sections that hold `sh` blocks.
    pub fn headings(&self) -> Vec<String> {
        self.sections.iter().map(|(h, _)| h.clone()).collect()
    }

    /// The script of section `heading`, replacements applied.
    pub fn script(&self, heading: &str) -> String {
        let (_, text) = self
            .sections
            .iter()
            .find(|(h, _)| h == heading)
            .unwrap_or_else(|| {
                panic!(
                    "{} has no sh blocks under `## {heading}` (has: {:?})",
                    self.page.display(),
                    self.headings()
                )
            });
        let mut text = text.clone();
        for (from, to) in &self.replace {
            text = text.replace(from, to);
        }
        text
    }

    /// Runs section `heading`; panics unless it succeeds.
    pub fn run(&mut self, heading: &str) -> Output {
        let script = self.script(heading);
        self.ran.push(heading.to_owned());
        let mut path: Vec<PathBuf> = self.path.clone();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let mut cmd = Command::new("bash");
        cmd.args(["-euxo", "pipefail", "-c", &script])
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", std::env::join_paths(path).expect("PATH joins"))
            .env("HOME", self.work.join("home"))
            .env("TMPDIR", std::env::temp_dir())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run_with_timeout(cmd, self.timeout);
        if !out.success() {
            panic!(
                "`## {heading}` of {} failed ({}{}):\n--- script ---\n{script}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                self.page.display(),
                out.status,
                if out.timed_out { ", timed out" } else { "" },
                out.stderr.trim_end(),
                out.stdout.trim_end()
            );
        }
        out
    }

    /// Panics unless every section holding `sh` blocks was run: the page has no untested command.
    pub fn assert_all_ran(&self) {
        for heading in self.headings() {
            assert!(
                self.ran.contains(&heading),
                "the sh blocks under `## {heading}` of {} were not run by the test",
                self.page.display()
            );
        }
    }
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    // its own process group, so that a timeout also ends what the script started in the background
    cmd.process_group(0);
    let mut child = cmd.spawn().expect("spawn bash");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            break child.wait().expect("wait for the killed script");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_blocks_group_by_heading() {
        let md = "# t\n## A\n```sh\na1\n```\ntext\n```toml\nx=1\n```\n```sh\na2\n```\n## B\n```bash\nb\n```\n";
        assert_eq!(
            sh_blocks(md),
            vec![
                ("A".to_owned(), "a1\na2\n".to_owned()),
                ("B".to_owned(), "b\n".to_owned())
            ]
        );
    }
}
