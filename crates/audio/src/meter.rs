//! A live microphone level meter (the desktop app's settings screen): reads
//! an input device on a thread and reports the loudest 20 ms frame of
//! every 100 ms, in dBFS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::device::CpalSource;
use crate::{AudioError, FRAME, Source};

/// A running meter; dropping it stops the thread and closes the device.
pub struct Meter {
    stop: Arc<AtomicBool>,
}

impl Meter {
    /// Opens `device` (`None`: the default input) and calls `report` with
    /// a level in dBFS (−100 for digital silence) every 100 ms.
    ///
    /// # Errors
    /// The device cannot be opened.
    pub fn start(
        device: Option<&str>,
        report: impl Fn(f64) + Send + 'static,
    ) -> Result<Self, AudioError> {
        let mut source = CpalSource::open(device)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("mic-meter".into())
            .spawn(move || {
                let mut frame = vec![0.0f32; FRAME];
                let mut peak = -100.0f64;
                let mut n = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                    source.read_frame(&mut frame);
                    peak = peak.max(crate::analysis::rms_dbfs(&frame).max(-100.0));
                    n += 1;
                    if n == 5 {
                        report(peak);
                        peak = -100.0;
                        n = 0;
                    }
                }
            })
            .map_err(AudioError::backend)?;
        Ok(Self { stop })
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
