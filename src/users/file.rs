//! The users file on disk: parsing and validating it, editing it for
//! `authgate user add|remove`, and rewriting it atomically so that a server
//! watching it never reads half a file.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::model::User;

const PHC_PREFIX: &str = "$argon2id$";

/// Written at the top of every saved file, because a rewrite cannot keep
/// the comments someone typed by hand.
const HEADER: &str = "# authgate users file. `authgate user add|remove` rewrites it: \
                      comments are not kept.\n\n";

/// What can go wrong with the users file. Every message names the file;
/// none ever contains a password hash.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("users file {}: cannot read it: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("users file {}: invalid TOML{}: {message}", path.display(), at_line(*line))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("users file {}: [[user]] entry #{index} has an empty email", path.display())]
    EmptyEmail { path: PathBuf, index: usize },
    #[error(
        "users file {}: user {email}: password is not an argon2id PHC string \
         (it must start with `$argon2id$`; `authgate hash-password` makes one)",
        path.display()
    )]
    BadPassword { path: PathBuf, email: String },
    #[error(
        "users file {}: email {email} is used by [[user]] entries #{first} and #{second} \
         (emails are compared case-insensitively)",
        path.display()
    )]
    Duplicate {
        path: PathBuf,
        email: String,
        first: usize,
        second: usize,
    },
    #[error("users file {}: {email:?} is not an email address (no '@')", path.display())]
    InvalidEmail { path: PathBuf, email: String },
    #[error("users file {}: a user with email {email} exists already", path.display())]
    Exists { path: PathBuf, email: String },
    #[error("users file {}: no user with email {email}", path.display())]
    NotFound { path: PathBuf, email: String },
    #[error(
        "users file {}: user {email}: second_factor {value:?} is not one of authy, totp, verify",
        path.display()
    )]
    UnknownSecondFactor {
        path: PathBuf,
        email: String,
        value: String,
    },
    #[error("users file {}: cannot write it: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!(" at line {n}")).unwrap_or_default()
}

/// The users of one file, validated: every entry has an email and an
/// argon2id hash, and no email appears twice in any letter case.
#[derive(Clone)]
pub struct UsersFile {
    path: PathBuf,
    users: Vec<User>,
}

// Hand-written so that a debug log of the file never prints hashes.
impl fmt::Debug for UsersFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsersFile")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

// A typo such as `[[users]]` must fail loudly rather than load no users.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    user: Vec<User>,
}

#[derive(Serialize)]
struct DocumentRef<'a> {
    user: &'a [User],
}

impl UsersFile {
    /// Reads and validates the file, which must exist.
    pub fn load(path: &Path) -> Result<UsersFile, UsersFileError> {
        let bytes = fs::read(path).map_err(|error| UsersFileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Like `load`, but a missing file is an empty list: the first
    /// `authgate user add` of a fresh setup creates it.
    pub fn open_or_empty(path: &Path) -> Result<UsersFile, UsersFileError> {
        match Self::load(path) {
            Err(UsersFileError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                Ok(UsersFile {
                    path: path.to_path_buf(),
                    users: Vec::new(),
                })
            }
            other => other,
        }
    }

    /// Parses content already read, so the watcher validates exactly the
    /// bytes it hashed.
    pub(super) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<UsersFile, UsersFileError> {
        let text = std::str::from_utf8(bytes).map_err(|e| UsersFileError::Read {
            path: path.to_path_buf(),
            error: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let doc: Document = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let mut users = doc.user;
        // Stray spaces would make a hand-written user impossible to log in as.
        for user in &mut users {
            user.email = user.email.trim().to_owned();
        }
        validate(path, &users)?;
        Ok(UsersFile {
            path: path.to_path_buf(),
            users,
        })
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn into_users(self) -> Vec<User> {
        self.users
    }

    /// Adds a user, keeping the email's letter case but not its surrounding
    /// spaces.
    pub fn add(&mut self, mut user: User) -> Result<(), UsersFileError> {
        user.email = user.email.trim().to_owned();
        if !user.email.contains('@') {
            return Err(UsersFileError::InvalidEmail {
                path: self.path.clone(),
                email: user.email,
            });
        }
        // Checked here too, so `save` never writes a file `load` rejects.
        check_password(&self.path, &user)?;
        check_second_factor(&self.path, &user)?;
        if self.position(&user.email).is_some() {
            return Err(UsersFileError::Exists {
                path: self.path.clone(),
                email: user.email,
            });
        }
        self.users.push(user);
        Ok(())
    }

    /// Removes the user with this email, in any letter case.
    pub fn remove(&mut self, email: &str) -> Result<(), UsersFileError> {
        match self.position(email) {
            Some(index) => {
                self.users.remove(index);
                Ok(())
            }
            None => Err(UsersFileError::NotFound {
                path: self.path.clone(),
                email: email.trim().to_owned(),
            }),
        }
    }

    /// `authgate user reset-2fa`: a TOTP enrolled before `now` stops
    /// counting, and the user may enroll again at their next login.
    pub fn reset_second_factor(&mut self, email: &str, now: u64) -> Result<(), UsersFileError> {
        match self.position(email) {
            Some(index) => {
                self.users[index].second_factor_reset = Some(now);
                Ok(())
            }
            None => Err(UsersFileError::NotFound {
                path: self.path.clone(),
                email: email.trim().to_owned(),
            }),
        }
    }

    /// Whether a user with this email (in any letter case) is in the file.
    pub fn contains(&self, email: &str) -> bool {
        self.position(email).is_some()
    }

    /// Rewrites the file atomically with mode 0600 (it holds password
    /// hashes).
    pub fn save(&self) -> Result<(), UsersFileError> {
        let write_error = |error| UsersFileError::Write {
            path: self.path.clone(),
            error,
        };
        let body = toml::to_string(&DocumentRef { user: &self.users })
            .map_err(|e| write_error(io::Error::other(e)))?;
        write_atomically(&self.path, format!("{HEADER}{body}").as_bytes()).map_err(write_error)
    }

    fn position(&self, email: &str) -> Option<usize> {
        let wanted = email.trim().to_lowercase();
        self.users
            .iter()
            .position(|u| u.email.to_lowercase() == wanted)
    }
}

fn validate(path: &Path, users: &[User]) -> Result<(), UsersFileError> {
    let mut seen = HashMap::new();
    for (i, user) in users.iter().enumerate() {
        let index = i + 1;
        if user.email.is_empty() {
            return Err(UsersFileError::EmptyEmail {
                path: path.to_path_buf(),
                index,
            });
        }
        check_password(path, user)?;
        check_second_factor(path, user)?;
        if let Some(first) = seen.insert(user.email.to_lowercase(), index) {
            return Err(UsersFileError::Duplicate {
                path: path.to_path_buf(),
                email: user.email.clone(),
                first,
                second: index,
            });
        }
    }
    Ok(())
}

fn check_password(path: &Path, user: &User) -> Result<(), UsersFileError> {
    if user.password.starts_with(PHC_PREFIX) {
        return Ok(());
    }
    Err(UsersFileError::BadPassword {
        path: path.to_path_buf(),
        email: user.email.clone(),
    })
}

fn check_second_factor(path: &Path, user: &User) -> Result<(), UsersFileError> {
    match user.second_factor.as_deref() {
        Some(value) if crate::model::Method::parse(value).is_none() => {
            Err(UsersFileError::UnknownSecondFactor {
                path: path.to_path_buf(),
                email: user.email.clone(),
                value: value.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// toml's own Display quotes the offending source line, which may be a
/// password hash; we keep its message and key path, and give the line.
fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> UsersFileError {
    let line = error.span().map(|span| {
        text.as_bytes()[..span.start.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    });
    let mut bare = error.clone();
    bare.set_input(None);
    let message = bare.to_string().trim().replace('\n', ", ");
    UsersFileError::Parse {
        path: path.to_path_buf(),
        line,
        message: without_values(&message),
    }
}

/// Blanks the values serde quotes in type errors (`invalid type: string
/// "..."`), since a value may be a hash.
fn without_values(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(MARK) {
        let (head, tail) = rest.split_at(start + MARK.len());
        out.push_str(head);
        out.push('…');
        rest = &tail[closing_quote(tail)..];
    }
    out.push_str(rest);
    out
}

/// serde writes the value with `{:?}`, so inner quotes are escaped.
fn closing_quote(quoted: &str) -> usize {
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match c {
            '"' if !escaped => return i,
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    quoted.len()
}

/// Temp file in the target's directory, fsync, rename over the target: a
/// reader sees the old file or the new one, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = resolve_symlink(path)?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (temp_path, mut temp) = create_temp(dir, &target)?;
    let written = fill(&mut temp, bytes, &target).and_then(|()| fs::rename(&temp_path, &target));
    if written.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    written?;
    sync_dir(dir);
    Ok(())
}

/// Renaming over a symlink would replace the link itself; write where it
/// points instead.
fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_path_buf()),
    }
}

fn create_temp(dir: &Path, target: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map_or_else(|| "users.toml".into(), |n| n.to_string_lossy());
    let mut last_error = None;
    // A leftover of a crashed run may hold a name (same pid after reboot).
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match private_options().open(&temp_path) {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

fn fill(file: &mut File, bytes: &[u8], target: &Path) -> io::Result<()> {
    file.write_all(bytes)?;
    restrict(file, target)?;
    file.sync_all()
}

/// Mode 0600 whatever the umask. The owner is kept when possible: after
/// `sudo authgate user add`, a root-owned 0600 file would lock out a
/// server that runs as its own user.
#[cfg(unix)]
fn restrict(file: &File, target: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    let (Ok(old), Ok(new)) = (fs::metadata(target), file.metadata()) else {
        return Ok(());
    };
    if (old.uid(), old.gid()) != (new.uid(), new.gid())
        && let Err(e) = std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
    {
        tracing::warn!(
            path = %target.display(),
            error = %e,
            "users file: could not keep its owner; the server may no longer read it"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_file: &File, _target: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes the rename itself durable. Best effort: some filesystems refuse
/// to fsync a directory, and the new content is in place either way.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA";

    fn user(email: &str) -> User {
        User {
            email: email.to_owned(),
            name: "Alice Example".to_owned(),
            country_code: "1".to_owned(),
            phone: "5551234567".to_owned(),
            password: PHC.to_owned(),
            groups: vec!["admins".to_owned(), "dev".to_owned()],
            second_factor: Some("authy".to_owned()),
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    fn load_text(text: &str) -> Result<UsersFile, UsersFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, text).unwrap();
        UsersFile::load(&path)
    }

    fn empty_in(dir: &tempfile::TempDir) -> UsersFile {
        UsersFile::open_or_empty(&dir.path().join("users.toml")).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        let minimal = User {
            email: "Bob@Example.com".to_owned(),
            name: String::new(),
            country_code: String::new(),
            phone: String::new(),
            password: PHC.to_owned(),
            groups: Vec::new(),
            second_factor: None,
            second_factor_reset: None,
            identity: Default::default(),
        };
        file.add(user("alice@example.com")).unwrap();
        file.add(minimal).unwrap();
        file.save().unwrap();
        let loaded = UsersFile::load(&dir.path().join("users.toml")).unwrap();
        assert_eq!(loaded.users(), file.users());
        assert_eq!(loaded.into_users(), file.into_users());
    }

    #[test]
    fn design_example_loads() {
        let text = format!(
            "[[user]]\nemail = \"alice@example.com\"\nname = \"Alice Example\"\n\
             country_code = \"1\"\nphone = \"5551234567\"\npassword = '{PHC}'\n\
             groups = [\"admins\"]\nsecond_factor = \"authy\"\n"
        );
        let file = load_text(&text).unwrap();
        assert_eq!(file.users().len(), 1);
        assert_eq!(file.users()[0].second_factor.as_deref(), Some("authy"));
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_lists() {
        assert!(load_text("").unwrap().users().is_empty());
        assert!(load_text("# nobody yet\n").unwrap().users().is_empty());
    }

    #[test]
    fn saved_empty_list_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = empty_in(&dir);
        file.save().unwrap();
        assert!(
            UsersFile::load(&dir.path().join("users.toml"))
                .unwrap()
                .users()
                .is_empty()
        );
    }

    #[test]
    fn missing_file_is_an_error_for_load_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let err = UsersFile::load(&path).unwrap_err();
        assert!(matches!(err, UsersFileError::Read { .. }));
        assert!(err.to_string().contains("users.toml"), "{err}");
        assert!(UsersFile::open_or_empty(&path).unwrap().users().is_empty());
    }

    #[test]
    fn an_unknown_second_factor_is_refused_on_add_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        let mut bad = user("alice@example.com");
        bad.second_factor = Some("sms".into());
        let err = file.add(bad.clone()).unwrap_err();
        assert!(
            matches!(err, UsersFileError::UnknownSecondFactor { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"sms\""), "{err}");
        let path = dir.path().join("users.toml");
        let text = toml::to_string(&DocumentRef { user: &[bad] }).unwrap();
        fs::write(&path, text).unwrap();
        let err = UsersFile::load(&path).unwrap_err();
        assert!(
            matches!(err, UsersFileError::UnknownSecondFactor { .. }),
            "{err}"
        );
    }

    #[test]
    fn reset_marks_the_user_and_survives_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        file.add(user("alice@example.com")).unwrap();
        file.reset_second_factor("ALICE@example.com", 1_700_000_000)
            .unwrap();
        file.save().unwrap();
        let loaded = UsersFile::load(&dir.path().join("users.toml")).unwrap();
        assert_eq!(loaded.users()[0].second_factor_reset, Some(1_700_000_000));
        let err = file.reset_second_factor("bob@example.com", 1).unwrap_err();
        assert!(matches!(err, UsersFileError::NotFound { .. }), "{err}");
    }

    #[test]
    fn add_refuses_duplicate_in_other_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        file.add(user("alice@example.com")).unwrap();
        let err = file.add(user(" ALICE@example.com")).unwrap_err();
        assert!(matches!(err, UsersFileError::Exists { .. }), "{err}");
        assert_eq!(file.users().len(), 1);
    }

    #[test]
    fn add_trims_and_keeps_case_and_refuses_no_at() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        file.add(user("  Alice@Example.com \n")).unwrap();
        assert_eq!(file.users()[0].email, "Alice@Example.com");
        let err = file.add(user("alice")).unwrap_err();
        assert!(matches!(err, UsersFileError::InvalidEmail { .. }), "{err}");
    }

    #[test]
    fn add_refuses_a_plain_password() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        let mut plain = user("alice@example.com");
        plain.password = "hunter2".to_owned();
        let err = file.add(plain).unwrap_err();
        assert!(matches!(err, UsersFileError::BadPassword { .. }), "{err}");
    }

    #[test]
    fn remove_unknown_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        file.add(user("alice@example.com")).unwrap();
        let err = file.remove("bob@example.com").unwrap_err();
        assert!(matches!(err, UsersFileError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("bob@example.com"), "{err}");
    }

    #[test]
    fn remove_is_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = empty_in(&dir);
        file.add(user("alice@example.com")).unwrap();
        file.add(user("bob@example.com")).unwrap();
        file.remove("ALICE@example.com").unwrap();
        let emails: Vec<_> = file.users().iter().map(|u| u.email.as_str()).collect();
        assert_eq!(emails, ["bob@example.com"]);
    }

    #[test]
    fn bad_phc_string_names_the_email_not_the_password() {
        let err = load_text(
            "[[user]]\nemail = \"alice@example.com\"\npassword = \"$2b$12$bcrypthash\"\n",
        )
        .unwrap_err();
        assert!(matches!(err, UsersFileError::BadPassword { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("alice@example.com") && text.contains("users.toml"),
            "{text}"
        );
        assert!(!text.contains("bcrypthash"), "{text}");
    }

    #[test]
    fn empty_email_names_the_entry() {
        let text = format!(
            "[[user]]\nemail = \"a@example.com\"\npassword = '{PHC}'\n\
             [[user]]\nemail = \" \"\npassword = '{PHC}'\n"
        );
        let err = load_text(&text).unwrap_err();
        assert!(
            matches!(err, UsersFileError::EmptyEmail { index: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("#2"), "{err}");
    }

    #[test]
    fn duplicate_in_hand_written_file_errors() {
        let text = format!(
            "[[user]]\nemail = \"Alice@example.com\"\npassword = '{PHC}'\n\
             [[user]]\nemail = \"alice@EXAMPLE.com\"\npassword = '{PHC}'\n"
        );
        let err = load_text(&text).unwrap_err();
        assert!(
            matches!(
                err,
                UsersFileError::Duplicate {
                    first: 1,
                    second: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_gives_the_line_but_not_the_source() {
        let text =
            format!("[[user]]\nemail = \"a@example.com\"\npassword = \"{PHC}\ngroups = []\n");
        let err = load_text(&text).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, UsersFileError::Parse { line: Some(3), .. }),
            "{message}"
        );
        assert!(
            message.contains("line 3") && message.contains("users.toml"),
            "{message}"
        );
        assert!(!message.contains("c29tZXNhbHQ"), "{message}");
    }

    #[test]
    fn type_error_does_not_echo_the_value() {
        let text = format!("[[user]]\nemail = \"a@example.com\"\npassword = ['{PHC}']\n");
        let message = load_text(&text).unwrap_err().to_string();
        assert!(message.contains("users.toml"), "{message}");
        assert!(!message.contains("c29tZXNhbHQ"), "{message}");
    }

    #[test]
    fn only_quoted_string_values_are_blanked() {
        let typed = r#"invalid type: string "a\"b$argon2id$x", expected a sequence"#;
        assert_eq!(
            without_values(typed),
            r#"invalid type: string "…", expected a sequence"#
        );
        let syntax = "invalid basic string, expected `\"`";
        assert_eq!(without_values(syntax), syntax);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = format!("[[users]]\nemail = \"a@example.com\"\npassword = '{PHC}'\n");
        let err = load_text(&text).unwrap_err();
        assert!(err.to_string().contains("users"), "{err}");
        let text = format!("[[user]]\nemail = \"a@example.com\"\npasword = '{PHC}'\n");
        assert!(matches!(
            load_text(&text),
            Err(UsersFileError::Parse { .. })
        ));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut file = UsersFile::load(&path).unwrap();
        file.add(user("alice@example.com")).unwrap();
        file.save().unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["users.toml"]);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(UsersFile::load(&path).unwrap().users().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn save_through_a_symlink_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("users.toml");
        fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut file = UsersFile::load(&link).unwrap();
        file.add(user("alice@example.com")).unwrap();
        file.save().unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(UsersFile::load(&real).unwrap().users().len(), 1);
        assert_eq!(mode(&real), 0o600);
    }

    #[test]
    fn save_into_a_missing_directory_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = UsersFile::open_or_empty(&dir.path().join("nope/users.toml")).unwrap();
        let err = file.save().unwrap_err();
        assert!(matches!(err, UsersFileError::Write { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
