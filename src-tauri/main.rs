//! The desktop softphone's executable: see [`softphone_app::run`].
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    softphone_app::run();
}
