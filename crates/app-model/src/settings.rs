//! The settings file: JSON in the OS config dir, written atomically
//! (temp file, then rename).

use std::path::Path;

use crate::types::Settings;

/// Reads the settings at `path` (defaults when missing or unreadable); an
/// installation without an endpoint id gets `fresh_id()`.
pub fn load(path: &Path, fresh_id: impl FnOnce() -> String) -> Settings {
    let mut s: Settings = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if s.endpoint_id.is_empty() {
        s.endpoint_id = fresh_id();
    }
    s
}

/// Writes `settings` to `path`, creating its directory.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn save(path: &Path, settings: &Settings) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(settings)?)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_restart_and_keep_the_endpoint_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/settings.json");
        let first = load(&path, || "desktop-abc".into());
        assert_eq!(first.endpoint_id, "desktop-abc");
        let mut changed = first.clone();
        changed.ringtone_volume = 0.3;
        save(&path, &changed).unwrap();
        let again = load(&path, || panic!("the id is kept"));
        assert_eq!(again, changed);
    }

    #[test]
    fn settings_files_from_older_versions_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, r#"{"device_id":"desktop-old","ringtone":"soft"}"#).unwrap();
        let s = load(&path, || "new".into());
        assert_eq!(s.endpoint_id, "desktop-old", "the old name is read");
        assert_eq!(s.ringtone, softphone_audio::ringtone::Ringtone::Soft);
        assert_eq!(s.ringtone_volume, 0.7, "missing keys take their defaults");
    }
}
