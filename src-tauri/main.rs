//! The desktop softphone's executable: see [`softphone_app::run`].
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // WebKitGTK composites the page with OpenGL; on the X desktops agents use,
    // often without a GPU driver, that is Mesa's software renderer in every
    // web process: about 65 MB of RSS for a UI of buttons and lists (see
    // docs/benchmarks.md, "Desktop app memory"). Drawing without compositing
    // costs nothing visible here. `SOFTPHONE_WEBKIT_COMPOSITING=1`, or any
    // explicit WEBKIT_DISABLE_COMPOSITING_MODE, keeps WebKit's choice.
    #[cfg(target_os = "linux")]
    if std::env::var_os("SOFTPHONE_WEBKIT_COMPOSITING").is_none()
        && std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none()
    {
        // SAFETY: nothing else runs yet (no thread has been started), so no
        // one can read the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
        }
    }
    // The UI is a few kB of script that reacts to clicks and events; the
    // JavaScriptCore interpreter runs it without a visible delay, and with
    // its JIT compilers off the web process maps about 6 MB less (PSS, see
    // docs/benchmarks.md, "Desktop app memory"). An explicit JSC_useJIT
    // (e.g. `JSC_useJIT=1`) keeps the JIT.
    #[cfg(target_os = "linux")]
    if std::env::var_os("JSC_useJIT").is_none() {
        // SAFETY: as above, still a single thread.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("JSC_useJIT", "0");
        }
    }
    softphone_app::run();
}
