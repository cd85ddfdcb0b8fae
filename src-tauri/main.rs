//! The desktop softphone's executable: see [`softphone_app::run`].
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    #[cfg(target_os = "linux")]
    linux_defaults();
    softphone_app::memory::limit_arenas();
    softphone_app::run();
}

/// Environment defaults for GTK and WebKitGTK, each kept when the variable
/// is already set. Figures: docs/benchmarks.md, "Desktop app memory".
#[cfg(target_os = "linux")]
fn linux_defaults() {
    let mut defaults: Vec<(&str, &str)> = Vec::new();
    // WebKitGTK composites the page with OpenGL; on the X desktops agents
    // use, often without a GPU driver, that is Mesa's software renderer in
    // every web process: about 60 MB of PSS for a UI of buttons and lists.
    // Drawing without compositing costs nothing visible here.
    // `SOFTPHONE_WEBKIT_COMPOSITING=1`, or an explicit
    // WEBKIT_DISABLE_COMPOSITING_MODE, keeps WebKit's choice.
    if std::env::var_os("SOFTPHONE_WEBKIT_COMPOSITING").is_none() {
        defaults.extend([
            ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
            // Without compositing the shell itself draws nothing with GL,
            // yet three probes load Mesa (and its 36 MB libLLVM, about 20 MB
            // of PSS) into it: GTK's GLX visual check when the display
            // opens (GDK_GL=disable), WebKit's DMA-BUF renderer check when
            // the first WebKitSettings is made, and its search for the GPU
            // to hand each web process (skipped when the render device is
            // named; the web process only opens it in hardware mode, which
            // compositing off never enters, and falls back if it cannot).
            ("GDK_GL", "disable"),
            ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
            (
                "WEBKIT_WEB_RENDER_DEVICE_FILE",
                "/nonexistent-softphone-no-gpu",
            ),
        ]);
    }
    // The UI is a few kB of script that reacts to clicks and events; the
    // JavaScriptCore interpreter runs it without a visible delay, and with
    // its JIT compilers off the web process maps about 6 MB less.
    // `JSC_useJIT=1` keeps the JIT.
    defaults.push(("JSC_useJIT", "0"));
    for (var, value) in defaults {
        if std::env::var_os(var).is_none() {
            // SAFETY: the first statements of main: no other thread exists
            // yet, so no one reads the environment while it changes.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(var, value);
            }
        }
    }
}
