//! The tenant's file tree as FTP and SFTP clients see it, kept on the node's
//! local disk under `<data dir>/drop/<tenant slug>/`:
//!
//! ```text
//! /                 a CSV here is a new version of the default table (crm)
//! /<table>/         a CSV here is a new version of <table>
//! /calls/           audio files with a NAME.json sidecar or a CSV manifest
//! NAME.report.txt   written next to every processed upload
//! ```
//!
//! Clients name files with paths in that namespace; [`DropPath`] is the only
//! way from such a path to a file on disk, and it refuses anything that could
//! leave the tenant's directory (`..`, NUL, backslashes, absolute host paths).

use callmeta_app::usecases::tokens::Action;
use std::path::{Path, PathBuf};

/// The folder of call drops.
pub const CALLS_DIR: &str = "calls";
/// The table a CSV uploaded at the root goes to.
pub const DEFAULT_TABLE: &str = "crm";
/// The suffix of the report written next to a processed upload.
pub const REPORT_SUFFIX: &str = ".report.txt";

/// The root of every tenant's tree on this node.
#[derive(Debug, Clone)]
pub struct DropTree {
    root: PathBuf,
}

/// A path inside one tenant's tree, already checked: `parts` are plain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropPath {
    parts: Vec<String>,
}

/// A client's path that names nothing in the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?}: {why}")]
pub struct PathError {
    /// The path as the client gave it.
    pub path: String,
    pub why: &'static str,
}

/// Where an upload goes, from its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A new version of this table.
    Table(String),
    /// A file of a call drop (audio, sidecar or manifest).
    Calls,
    /// Not something to process: reports, temporary names, deeper folders.
    Ignored(&'static str),
}

impl DropTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tenant's home directory (created with its standard folders).
    pub fn home(&self, slug: &str) -> std::io::Result<PathBuf> {
        let home = self.root.join(slug);
        std::fs::create_dir_all(home.join(CALLS_DIR))?;
        Ok(home)
    }

    /// Makes sure a folder exists for each of the tenant's tables.
    pub fn ensure_table_dirs<'a>(&self, slug: &str, tables: impl IntoIterator<Item = &'a str>) {
        for table in tables {
            if table != DEFAULT_TABLE && is_plain_name(table) {
                let _ = std::fs::create_dir_all(self.root.join(slug).join(table));
            }
        }
    }

    /// The file on disk for a checked path.
    pub fn file(&self, slug: &str, path: &DropPath) -> PathBuf {
        let mut file = self.root.join(slug);
        for part in &path.parts {
            file.push(part);
        }
        file
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name.len() <= 255 && !name.contains(['/', '\\', '\0'])
}

impl DropPath {
    /// Checks a client's path (absolute in the tenant's namespace, or
    /// relative to its root). `.` parts are dropped; `..` is refused rather
    /// than resolved, so no path can name anything outside the tree.
    pub fn parse(path: &str) -> Result<DropPath, PathError> {
        let refused = |why| PathError {
            path: path.to_string(),
            why,
        };
        if path.contains(['\0', '\\']) {
            return Err(refused("unsupported character in path"));
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(refused("`..` is not allowed")),
                name if name.len() > 255 => return Err(refused("name too long")),
                name => parts.push(name.to_string()),
            }
        }
        if parts.len() > 8 {
            return Err(refused("too deep"));
        }
        Ok(DropPath { parts })
    }

    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The path as clients see it (`/crm/export.csv`).
    pub fn display(&self) -> String {
        format!("/{}", self.parts.join("/"))
    }

    /// The path of the report written next to this file.
    pub fn report(&self) -> DropPath {
        let mut parts = self.parts.clone();
        if let Some(last) = parts.last_mut() {
            last.push_str(REPORT_SUFFIX);
        }
        DropPath { parts }
    }

    /// A sibling in the same folder.
    pub fn sibling(&self, name: &str) -> DropPath {
        let mut parts = self.parts.clone();
        parts.pop();
        parts.push(name.to_string());
        DropPath { parts }
    }

    /// What an upload at this path is.
    /// What writing, renaming or removing at this path does, for the
    /// login's role: in `calls/`, a call drop; anywhere else, a table's
    /// upload (reports and temporary names included, since they are
    /// written on the way to one).
    pub fn write_action(&self) -> Action {
        match self.parts.as_slice() {
            [dir, _, ..] if dir == CALLS_DIR => Action::CreateCalls,
            _ => Action::UploadTables,
        }
    }

    pub fn destination(&self) -> Destination {
        let Some(name) = self.file_name() else {
            return Destination::Ignored("not a file");
        };
        if is_report(name) {
            return Destination::Ignored("a report");
        }
        if is_temporary(name) {
            return Destination::Ignored("a temporary name");
        }
        match self.parts.as_slice() {
            [_] => Destination::Table(DEFAULT_TABLE.to_string()),
            [dir, _] if dir == CALLS_DIR => Destination::Calls,
            [dir, _] => Destination::Table(dir.clone()),
            _ => Destination::Ignored("inside a sub-folder"),
        }
    }
}

pub fn is_report(name: &str) -> bool {
    name.ends_with(REPORT_SUFFIX)
}

/// Names that upload clients give a file while it is being written, before
/// renaming it: lftp (`.in.NAME.`), WinSCP (`NAME.filepart`), FileZilla and
/// browsers (`NAME.part`, `NAME.crdownload`), editors and scripts (`NAME.tmp`,
/// `~NAME`), and dot files in general.
pub fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with('.')
        || lower.starts_with('~')
        || [
            ".filepart",
            ".part",
            ".tmp",
            ".temp",
            ".crdownload",
            ".partial",
            ".upload",
        ]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(path: &str) -> Destination {
        DropPath::parse(path).unwrap().destination()
    }

    #[test]
    fn where_uploads_go() {
        assert_eq!(dest("/export.csv"), Destination::Table("crm".into()));
        assert_eq!(dest("export.csv"), Destination::Table("crm".into()));
        assert_eq!(dest("/agents/export.csv"), Destination::Table("agents".into()));
        assert_eq!(dest("/./agents//export.csv"), Destination::Table("agents".into()));
        assert_eq!(dest("/calls/a.wav"), Destination::Calls);
        assert!(matches!(dest("/export.csv.report.txt"), Destination::Ignored(_)));
        assert!(matches!(dest("/.in.export.csv."), Destination::Ignored(_)));
        assert!(matches!(dest("/export.csv.filepart"), Destination::Ignored(_)));
        assert!(matches!(dest("/a/b/c.csv"), Destination::Ignored(_)));
        assert!(matches!(dest("/"), Destination::Ignored(_)));
    }

    #[test]
    fn nothing_escapes_the_tree() {
        for bad in [
            "/../x.csv",
            "../../etc/passwd",
            "/calls/../../x",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(DropPath::parse(bad).is_err(), "{bad}");
        }
        let tree = DropTree::new("/srv/drop");
        let p = DropPath::parse("/crm/./x.csv").unwrap();
        assert_eq!(tree.file("acme", &p), PathBuf::from("/srv/drop/acme/crm/x.csv"));
        assert_eq!(p.report().display(), "/crm/x.csv.report.txt");
    }
}
