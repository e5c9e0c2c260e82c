//! Call recording: a two-channel WAV file, customer on the left, agent on the right, 8 kHz
//! 16-bit PCM, one file per call.
//!
//! Three layers, each usable alone:
//!
//! - [`Mixer`] (sans-IO) places each side's decoded audio on one timeline that starts with the
//!   call, by arrival time, and hands out stereo frames once they are older than the jitter
//!   window. The driving contract: [`Mixer::handle_audio`] for every decoded chunk,
//!   [`Mixer::poll_frames`] until it returns 0, [`Mixer::handle_end`] when the call ends and then
//!   `poll_frames` until 0 once more. The mixer buffers what lies between the last poll and the
//!   newest audio, so polling before each `handle_audio` bounds that to the jitter window.
//! - [`Recording`] writes frames to the file and checkpoints it at least once per second of
//!   audio, so that a process killed mid-call (`kill -9`, a crash) leaves a valid WAV file
//!   holding everything up to the last checkpoint.
//! - [`RecordingSink`] runs both on a thread of its own fed by a bounded queue, so the media
//!   path never waits for a disk: a full queue drops audio, a failed file stops only the
//!   recording, and both are counted in [`RecorderCounters`].
//!
//! Recording failures never stop a call; they are returned as [`RecordError`] and counted.
//!
//! # Placement on the timeline
//!
//! A chunk received at `now` holds the audio of the `len` samples before `now`, so it belongs at
//! `now - len` from the call's start, rounded to a 20 ms frame. Packets do not arrive evenly
//! spaced, so each side keeps a cursor where its audio so far ends, and a chunk normally
//! continues at that cursor: network jitter then makes neither holes nor overlaps. The arrival
//! time takes over when the two disagree by more than half the jitter window:
//!
//! - A side that starts late, or resumes after sending nothing for a while (hold, silence
//!   suppression, a lost burst), is placed at its arrival time; the gap is silence.
//! - A chunk that would put its side more than half a window ahead of real time is dropped:
//!   that is duplicated or overlapping audio (or a sender clock running fast), and writing it
//!   would stretch the recording. Audio is never summed, so nothing doubles in loudness either,
//!   and the recording's length follows the wall clock. Removing duplicate RTP packets by
//!   sequence number is the caller's job; this only bounds the damage.
//!
//! # Why a checkpointed file survives `kill -9`
//!
//! A WAV file states its RIFF and data chunk sizes in the header, which [`hound`] writes as 0 at
//! creation. `hound::WavWriter::flush` (hound 3.5) seeks to the header, writes the sizes of the
//! samples written so far, flushes the underlying writer and seeks back; its documentation calls
//! this checkpointing ("the file can still be read by a compliant decoder up to the last
//! flush"). Our writer is a `BufWriter<File>`, whose seek first writes out its buffer, so the
//! samples reach the file before the header that counts them. After a kill the header names
//! the data up to the last flush; anything written after it is trailing bytes a reader ignores.
//! A flushed file survives the process, not a power cut: nothing here calls `fsync`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hound::{SampleFormat, WavSpec, WavWriter};

/// The recording's sample rate: narrowband telephony.
pub const SAMPLE_RATE: u32 = 8000;

/// How long audio waits for a late packet before it is written.
pub const DEFAULT_JITTER_WINDOW: Duration = Duration::from_millis(200);

/// Placement granularity: one 20 ms packet.
const FRAME: u64 = SAMPLE_RATE as u64 / 50;

/// Most frames [`Mixer::poll_frames`] hands out per call: one second.
const MAX_BATCH: u64 = SAMPLE_RATE as u64;

/// Frames between checkpoints of the file: one second.
const FLUSH_EVERY: u64 = SAMPLE_RATE as u64;

/// The most frames a WAV file can describe: its 32-bit RIFF size counts 36 header bytes and
/// 4 bytes per stereo frame.
const MAX_FRAMES: u64 = (u32::MAX as u64 - 36) / 4;

/// Samples per queued chunk; longer input is split.
const CHUNK_SAMPLES: usize = 160;

/// Queued chunks per call: about a second of both sides at 20 ms packets.
const QUEUE_CHUNKS: usize = 128;

/// Attempts at a free file name (`id.wav`, `id-1.wav`, …) before giving up.
const NAME_ATTEMPTS: u32 = 10;

/// Longest file stem taken from a call id.
const MAX_STEM: usize = 128;

/// Which side of the call, and so which channel, audio belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Left channel.
    Customer,
    /// Right channel.
    Agent,
}

impl Side {
    fn channel(self) -> usize {
        match self {
            Side::Customer => 0,
            Side::Agent => 1,
        }
    }
}

/// Why recording failed. The call goes on regardless.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be created: the directory is missing or unwritable, or every name
    /// tried is taken.
    #[error("cannot create recording {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// Writing or checkpointing the file failed (disk full, I/O error).
    #[error("cannot write recording: {0}")]
    Write(#[source] hound::Error),
    /// The recording reached the largest size a WAV file can describe (about 37 hours).
    #[error("recording exceeds the WAV size limit")]
    TooLong,
    /// The thread that writes the recording could not be started.
    #[error("cannot start the recording thread: {0}")]
    Spawn(#[source] io::Error),
    /// The call's media is not relayed here: a leg to record is not open.
    #[error("media leg {0} is not open")]
    NoSuchLeg(u16),
}

/// Places both sides' audio on the call's timeline and hands out stereo frames.
#[derive(Debug)]
pub struct Mixer {
    start: Instant,
    /// In samples.
    window: u64,
    /// How far a side may stray from its arrival time before arrival time wins, in samples.
    slack: u64,
    /// Timeline position of `pending[0]`: everything before it has been handed out.
    emitted: u64,
    pending: VecDeque<[i16; 2]>,
    /// Where each side's audio so far ends.
    cursors: [Option<u64>; 2],
    /// Set by [`Mixer::handle_end`]: where the recording ends.
    end: Option<u64>,
    dropped: u64,
}

impl Mixer {
    /// A mixer for a call that started at `start`, with the default jitter window.
    pub fn new(start: Instant) -> Mixer {
        Mixer::with_jitter_window(start, DEFAULT_JITTER_WINDOW)
    }

    /// A mixer that holds audio back for `window` to wait for late packets.
    pub fn with_jitter_window(start: Instant, window: Duration) -> Mixer {
        let window = samples_in(window).max(2 * FRAME);
        Mixer {
            start,
            window,
            slack: window / 2,
            emitted: 0,
            pending: VecDeque::new(),
            cursors: [None, None],
            end: None,
            dropped: 0,
        }
    }

    /// Takes `samples` of `side`'s audio (8 kHz) received at `now`.
    pub fn handle_audio(&mut self, now: Instant, side: Side, samples: &[i16]) {
        if self.end.is_some() || samples.is_empty() {
            return;
        }
        let now = self.position(now);
        let len = samples.len() as u64;
        let arrival = round_to_frame(now.saturating_sub(len));
        let ch = side.channel();
        let pos = match self.cursors[ch] {
            Some(cursor) if arrival <= cursor + self.slack => {
                if cursor + len > now + self.slack {
                    self.dropped += 1;
                    return;
                }
                cursor
            }
            _ => arrival,
        };
        self.cursors[ch] = Some(pos + len);

        // Whatever would land before what was already handed out is too late to record.
        let skip = self.emitted.saturating_sub(pos).min(len) as usize;
        if skip == samples.len() {
            return;
        }
        let samples = &samples[skip..];
        let offset = (pos + skip as u64 - self.emitted) as usize;
        let needed = offset + samples.len();
        if self.pending.len() < needed {
            self.pending.resize(needed, [0, 0]);
        }
        for (frame, &sample) in self.pending.range_mut(offset..needed).zip(samples) {
            frame[ch] = sample;
        }
    }

    /// Appends to `out` the frames that are ready at `now`, at most a second's worth, and
    /// returns how many. Call until it returns 0.
    pub fn poll_frames(&mut self, now: Instant, out: &mut Vec<[i16; 2]>) -> usize {
        let ready = match self.end {
            Some(end) => end,
            None => self.position(now).saturating_sub(self.window),
        };
        let n = ready.saturating_sub(self.emitted).min(MAX_BATCH) as usize;
        let buffered = n.min(self.pending.len());
        out.extend(self.pending.drain(..buffered));
        out.resize(out.len() + (n - buffered), [0, 0]);
        self.emitted += n as u64;
        n
    }

    /// The call ended at `now`: everything received is ready now, and the recording lasts
    /// until `now` or the end of the last audio, whichever is later. Later audio is ignored.
    pub fn handle_end(&mut self, now: Instant) {
        let written = self.emitted + self.pending.len() as u64;
        self.end = Some(self.position(now).max(written));
    }

    /// Chunks dropped as duplicated or overlapping audio.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn position(&self, now: Instant) -> u64 {
        samples_in(now.saturating_duration_since(self.start))
    }
}

fn samples_in(d: Duration) -> u64 {
    (d.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
}

fn round_to_frame(samples: u64) -> u64 {
    (samples + FRAME / 2) / FRAME * FRAME
}

/// A WAV file being recorded.
pub struct Recording {
    writer: WavWriter<BufWriter<File>>,
    path: PathBuf,
    frames: u64,
    since_flush: u64,
}

impl Recording {
    /// Creates `<call id>.wav` in `dir`, the call id reduced to `[A-Za-z0-9._-]`. An existing
    /// file is never overwritten: `-1`, `-2` … are appended until a name is free.
    pub fn create(dir: &Path, call_id: &str) -> Result<Recording, RecordError> {
        let stem = file_stem(call_id);
        let mut attempt = 0;
        loop {
            let name = match attempt {
                0 => format!("{stem}.wav"),
                n => format!("{stem}-{n}.wav"),
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Recording::from_file(path, file),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(source) => return Err(RecordError::Create { path, source }),
            }
        }
    }

    fn from_file(path: PathBuf, file: File) -> Result<Recording, RecordError> {
        let spec = WavSpec {
            channels: 2,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let writer = WavWriter::new(BufWriter::new(file), spec).map_err(RecordError::Write)?;
        let mut recording = Recording {
            writer,
            path,
            frames: 0,
            since_flush: 0,
        };
        // A valid, empty file from the start.
        recording.flush()?;
        Ok(recording)
    }

    /// Appends stereo frames (customer, agent), checkpointing after every second of audio.
    pub fn write(&mut self, mut frames: &[[i16; 2]]) -> Result<(), RecordError> {
        if self.frames + frames.len() as u64 > MAX_FRAMES {
            return Err(RecordError::TooLong);
        }
        while !frames.is_empty() {
            let room = (FLUSH_EVERY - self.since_flush) as usize;
            let (part, later) = frames.split_at(room.min(frames.len()));
            let mut samples = self.writer.get_i16_writer(2 * part.len() as u32);
            for &[left, right] in part {
                samples.write_sample(left);
                samples.write_sample(right);
            }
            samples.flush().map_err(RecordError::Write)?;
            self.frames += part.len() as u64;
            self.since_flush += part.len() as u64;
            if self.since_flush >= FLUSH_EVERY {
                self.flush()?;
            }
            frames = later;
        }
        Ok(())
    }

    /// Checkpoints the file: the header names every frame written so far.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.writer.flush().map_err(RecordError::Write)?;
        self.since_flush = 0;
        Ok(())
    }

    /// Completes the file after the call ended cleanly.
    pub fn finish(self) -> Result<(), RecordError> {
        self.writer.finalize().map_err(RecordError::Write)
    }

    /// Where the file is.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How much audio has been written.
    #[cfg(test)]
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.frames * 1_000_000 / u64::from(SAMPLE_RATE))
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// The file stem for a call id: only `[A-Za-z0-9._-]`, everything else becomes `_`, no leading
/// dot (no hidden files, no `..`), and bounded in length. A call id is remote input; it must not
/// pick where the file goes.
pub fn file_stem(call_id: &str) -> String {
    let mut stem: String = call_id
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .take(MAX_STEM)
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        stem.insert(0, '_');
    }
    stem
}

/// Failures of all recordings sharing these counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecorderCounters {
    /// Recordings that failed: the file could not be created, written or completed.
    pub errors: AtomicU64,
    /// Chunks of audio lost because a recording's queue was full, or dropped by its mixer as
    /// duplicated or overlapping.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
struct Chunk {
    now: Instant,
    side: Side,
    len: u16,
    samples: [i16; CHUNK_SAMPLES],
}

/// Audio travels inline: boxing it would allocate once per packet, and the queue's slots are
/// allocated once per call anyway.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "no allocation per packet")]
enum Message {
    Audio(Chunk),
    End(Instant),
}

/// A call's recording on its own thread: the media path hands audio over without waiting.
#[derive(Debug)]
pub struct RecordingSink {
    feed: RecordingFeed,
    thread: JoinHandle<()>,
}

/// The pushing end of a [`RecordingSink`], for the media path: cloning it allocates nothing per
/// packet, and pushing never blocks.
#[derive(Debug, Clone)]
pub struct RecordingFeed {
    tx: SyncSender<Message>,
    counters: Arc<RecorderCounters>,
}

impl RecordingFeed {
    /// Hands over `side`'s decoded audio received at `now`. Never blocks: if the writer is
    /// behind, the audio is dropped and counted. After the recording failed it is discarded
    /// silently (the failure was counted once).
    pub fn push(&self, now: Instant, side: Side, samples: &[i16]) {
        let mut after = samples.len();
        for part in samples.chunks(CHUNK_SAMPLES) {
            // Each part was received when its last sample was: earlier than `now` by the
            // audio that follows it.
            after -= part.len();
            let follows = Duration::from_micros(after as u64 * 1_000_000 / u64::from(SAMPLE_RATE));
            let mut chunk = Chunk {
                now: now.checked_sub(follows).unwrap_or(now),
                side,
                len: part.len() as u16,
                samples: [0; CHUNK_SAMPLES],
            };
            chunk.samples[..part.len()].copy_from_slice(part);
            match self.tx.try_send(Message::Audio(chunk)) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl RecordingSink {
    /// Starts recording a call that started at `start` into `dir` (see [`Recording::create`]).
    /// The file is created on the recording thread; failures from then on are counted in
    /// `counters`, not returned.
    pub fn start(
        dir: &Path,
        call_id: &str,
        start: Instant,
        counters: Arc<RecorderCounters>,
    ) -> Result<RecordingSink, RecordError> {
        RecordingSink::with_queue(dir, call_id, start, counters, QUEUE_CHUNKS)
    }

    fn with_queue(
        dir: &Path,
        call_id: &str,
        start: Instant,
        counters: Arc<RecorderCounters>,
        chunks: usize,
    ) -> Result<RecordingSink, RecordError> {
        let (tx, rx) = sync_channel(chunks);
        let writer = Writer {
            dir: dir.to_path_buf(),
            call_id: call_id.to_owned(),
            start,
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .stack_size(256 * 1024)
            .spawn(move || writer.run(rx))
            .map_err(RecordError::Spawn)?;
        Ok(RecordingSink {
            feed: RecordingFeed { tx, counters },
            thread,
        })
    }

    /// Hands over `side`'s decoded audio received at `now`; see [`RecordingFeed::push`].
    #[cfg(test)]
    pub fn push(&self, now: Instant, side: Side, samples: &[i16]) {
        self.feed.push(now, side, samples);
    }

    /// A handle that pushes audio into this recording from another task (one per leg of the
    /// call). Audio pushed after [`RecordingSink::close`] is discarded.
    pub fn feed(&self) -> RecordingFeed {
        self.feed.clone()
    }

    /// Ends the recording: the file is completed up to `now` on the recording thread. The
    /// returned handle may be joined to wait for that, or dropped. If the queue is full the
    /// recording ends with the last audio queued instead of at `now`.
    pub fn close(self, now: Instant) -> JoinHandle<()> {
        let _ = self.feed.tx.try_send(Message::End(now));
        self.thread
    }
}

/// The recording thread's state before the file exists.
struct Writer {
    dir: PathBuf,
    call_id: String,
    start: Instant,
    counters: Arc<RecorderCounters>,
}

impl Writer {
    fn run(self, rx: Receiver<Message>) {
        if let Err(e) = self.record(rx) {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call_id = %self.call_id, error = %e, "recording failed");
        }
    }

    fn record(&self, rx: Receiver<Message>) -> Result<(), RecordError> {
        let mut recording = Recording::create(&self.dir, &self.call_id)?;
        let mut mixer = Mixer::new(self.start);
        let mut frames = Vec::with_capacity(MAX_BATCH as usize);
        // Time is what the media path says it is; it only moves forward.
        let mut now = self.start;
        loop {
            let message = rx.recv();
            if let Ok(Message::Audio(chunk)) = &message {
                now = now.max(chunk.now);
            }
            // Hand out what is ready before taking new audio, so that audio after a long
            // silence of both sides does not have to buffer that silence.
            write_ready(&mut mixer, now, &mut frames, &mut recording)?;
            match message {
                Ok(Message::Audio(chunk)) => {
                    let samples = &chunk.samples[..usize::from(chunk.len)];
                    mixer.handle_audio(chunk.now, chunk.side, samples);
                }
                Ok(Message::End(at)) => {
                    now = now.max(at);
                    mixer.handle_end(now);
                    break;
                }
                // The sink was dropped without `close`: end with the last audio.
                Err(_) => {
                    mixer.handle_end(now);
                    break;
                }
            }
        }
        write_ready(&mut mixer, now, &mut frames, &mut recording)?;
        self.counters
            .dropped
            .fetch_add(mixer.dropped(), Ordering::Relaxed);
        recording.finish()
    }
}

fn write_ready(
    mixer: &mut Mixer,
    now: Instant,
    frames: &mut Vec<[i16; 2]>,
    recording: &mut Recording,
) -> Result<(), RecordError> {
    loop {
        frames.clear();
        if mixer.poll_frames(now, frames) == 0 {
            return Ok(());
        }
        recording.write(frames)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    fn chunk(value: i16) -> [i16; 160] {
        [value; 160]
    }

    /// Feeds `side` a 20 ms chunk of `value` for each packet index in `packets`, packet `i`
    /// arriving at `(i + 1) * 20 ms`.
    fn feed(mixer: &mut Mixer, t0: Instant, side: Side, packets: std::ops::Range<u32>, value: i16) {
        for i in packets {
            mixer.handle_audio(t0 + PTIME * (i + 1), side, &chunk(value));
        }
    }

    fn drain(mixer: &mut Mixer, now: Instant) -> Vec<[i16; 2]> {
        let mut out = Vec::new();
        while mixer.poll_frames(now, &mut out) > 0 {}
        out
    }

    fn channel(frames: &[[i16; 2]], side: Side) -> Vec<i16> {
        frames.iter().map(|f| f[side.channel()]).collect()
    }

    /// The runs of equal samples, as (value, length).
    fn runs(samples: &[i16]) -> Vec<(i16, usize)> {
        let mut runs: Vec<(i16, usize)> = Vec::new();
        for &s in samples {
            match runs.last_mut() {
                Some((v, n)) if *v == s => *n += 1,
                _ => runs.push((s, 1)),
            }
        }
        runs
    }

    #[test]
    fn a_side_silent_for_a_stretch_stays_aligned() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0);
        // Customer talks for 3 s; the agent for the first and the last second only.
        for i in 0..150 {
            let now = t0 + PTIME * (i + 1);
            mixer.handle_audio(now, Side::Customer, &chunk(1000));
            if !(50..100).contains(&i) {
                mixer.handle_audio(now, Side::Agent, &chunk(-2000));
            }
        }
        let end = t0 + Duration::from_secs(3);
        mixer.handle_end(end);
        let frames = drain(&mut mixer, end);
        assert_eq!(frames.len(), 24_000);
        assert_eq!(runs(&channel(&frames, Side::Customer)), [(1000, 24_000)]);
        assert_eq!(
            runs(&channel(&frames, Side::Agent)),
            [(-2000, 8000), (0, 8000), (-2000, 8000)]
        );
    }

    #[test]
    fn a_late_side_starts_at_its_arrival_time() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0);
        let mut out = Vec::new();
        for i in 0..100 {
            let now = t0 + PTIME * (i + 1);
            mixer.handle_audio(now, Side::Customer, &chunk(1000));
            if i >= 75 {
                mixer.handle_audio(now, Side::Agent, &chunk(-2000));
            }
            while mixer.poll_frames(now, &mut out) > 0 {}
        }
        // Only what is older than the jitter window has come out so far.
        assert_eq!(out.len(), 16_000 - 1600);
        let end = t0 + Duration::from_secs(2);
        mixer.handle_end(end);
        while mixer.poll_frames(end, &mut out) > 0 {}
        assert_eq!(runs(&channel(&out, Side::Customer)), [(1000, 16_000)]);
        assert_eq!(
            runs(&channel(&out, Side::Agent)),
            [(0, 12_000), (-2000, 4000)]
        );
    }

    #[test]
    fn jitter_makes_neither_holes_nor_overlaps() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0);
        // Packet i arrives up to 15 ms early or 60 ms late, sometimes several at once.
        let jitter_ms = [0i64, 15, -10, 60, 60, 40, 20, -15, 5, 0];
        let mut arrivals: Vec<(Instant, i16)> = (0..100)
            .map(|i| {
                let due = 20 * (i as i64 + 1) + jitter_ms[i % jitter_ms.len()];
                (t0 + Duration::from_millis(due as u64), i as i16 + 1)
            })
            .collect();
        arrivals.sort_by_key(|&(at, _)| at);
        for (at, value) in &arrivals {
            mixer.handle_audio(*at, Side::Agent, &chunk(*value));
        }
        let end = t0 + Duration::from_secs(2);
        mixer.handle_end(end);
        let frames = drain(&mut mixer, end);
        let agent = runs(&channel(&frames, Side::Agent));
        // Every packet once, 160 samples each, none missing, in arrival order.
        assert_eq!(agent.len(), 100);
        assert!(agent.iter().all(|&(v, n)| v != 0 && n == 160));
        assert_eq!(frames.len(), 16_000);
    }

    #[test]
    fn duplicated_audio_does_not_stretch_the_recording() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0);
        for i in 0..100 {
            let now = t0 + PTIME * (i + 1);
            let value = i as i16 + 1;
            mixer.handle_audio(now, Side::Customer, &chunk(value));
            mixer.handle_audio(now, Side::Customer, &chunk(value));
        }
        let end = t0 + Duration::from_secs(2);
        mixer.handle_end(end);
        let frames = drain(&mut mixer, end);
        // The side may run ahead of the wall clock by half the window, no more.
        assert!(frames.len() <= 16_000 + 800, "{}", frames.len());
        let customer = runs(&channel(&frames, Side::Customer));
        // At most half a window of doubled audio before the side would run ahead; from then
        // on every packet exactly once.
        assert!(customer.iter().all(|&(_, n)| n == 160 || n == 320));
        assert!(customer.iter().filter(|&&(_, n)| n == 320).count() <= 5);
        assert_eq!(customer.last(), Some(&(100, 160)));
        assert!(mixer.dropped() >= 95);
        // Never summed.
        assert!(customer.iter().all(|&(v, _)| (1..=100).contains(&v)));
    }

    #[test]
    fn both_sides_silent_is_silence_and_batches_are_bounded() {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0);
        feed(&mut mixer, t0, Side::Customer, 0..1, 7);
        let mut out = Vec::new();
        let later = t0 + Duration::from_secs(10);
        assert_eq!(mixer.poll_frames(later, &mut out), 8000);
        assert_eq!(&out[..160], &[[7, 0]; 160][..]);
        assert!(out[160..].iter().all(|f| *f == [0, 0]));
        let mut total = out.len();
        loop {
            let n = mixer.poll_frames(later, &mut out);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 80_000 - 1600);
    }

    #[test]
    fn call_ids_cannot_escape_the_directory() {
        assert_eq!(
            file_stem("a84b4c76e66710@pc33.example.com"),
            "a84b4c76e66710_pc33.example.com"
        );
        assert_eq!(file_stem("../../etc/passwd"), "_.._.._etc_passwd");
        assert_eq!(file_stem(".."), "_..");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("é/\0x"), "___x");
        assert_eq!(file_stem(&"x".repeat(1000)).len(), MAX_STEM);
    }

    fn read_back(path: &Path) -> (hound::WavSpec, Vec<[i16; 2]>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let frames = samples.chunks_exact(2).map(|f| [f[0], f[1]]).collect();
        (spec, frames)
    }

    #[test]
    fn a_recording_reads_back_as_8khz_stereo_with_the_audio_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(RecorderCounters::default());
        let t0 = Instant::now();
        // A queue long enough for the test's burst: a real call pushes in real time.
        let sink = RecordingSink::with_queue(dir.path(), "call/1@host", t0, counters.clone(), 1000)
            .unwrap();
        // 2.5 s; the agent joins after one second and sends 30 ms packets.
        for ms in (10..=2500u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if ms % 20 == 0 {
                sink.push(now, Side::Customer, &chunk(1000));
            }
            if ms > 1000 && ms % 30 == 10 {
                sink.push(now, Side::Agent, &[-2000; 240]);
            }
        }
        sink.close(t0 + Duration::from_millis(2500)).join().unwrap();
        assert_eq!(counters.errors.load(Ordering::Relaxed), 0);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);

        let (spec, frames) = read_back(&dir.path().join("call_1_host.wav"));
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        assert_eq!(frames.len(), 20_000);
        assert_eq!(runs(&channel(&frames, Side::Customer)), [(1000, 20_000)]);
        assert_eq!(
            runs(&channel(&frames, Side::Agent)),
            [(0, 8000), (-2000, 12_000)]
        );
    }

    #[test]
    fn an_existing_recording_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let first = Recording::create(dir.path(), "same").unwrap();
        let second = Recording::create(dir.path(), "same").unwrap();
        assert_eq!(first.path(), dir.path().join("same.wav"));
        assert_eq!(second.path(), dir.path().join("same-1.wav"));
    }

    #[test]
    fn a_file_abandoned_after_a_checkpoint_is_valid_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut recording = Recording::create(dir.path(), "crash").unwrap();
        let path = recording.path().to_path_buf();
        // 2.5 s in packet-sized writes: checkpoints at 1 s and 2 s.
        for i in 0..125 {
            recording.write(&[[i, -i]; 160]).unwrap();
        }
        assert_eq!(recording.duration(), Duration::from_millis(2500));
        // The process dies: no finish, no destructor, buffered bytes lost.
        std::mem::forget(recording);

        let (spec, frames) = read_back(&path);
        assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
        assert_eq!(frames.len(), 16_000);
        assert_eq!(frames[15_999], [99, -99]);

        // The same file cut anywhere after the checkpointed data still opens.
        let bytes = std::fs::read(&path).unwrap();
        let checkpointed = 44 + 16_000 * 4;
        assert!(bytes.len() >= checkpointed);
        for cut in [checkpointed, checkpointed + 3, bytes.len()] {
            let copy = dir.path().join(format!("cut-{cut}.wav"));
            std::fs::write(&copy, &bytes[..cut]).unwrap();
            let (_, frames) = read_back(&copy);
            assert_eq!(frames.len(), 16_000);
        }
    }

    #[test]
    fn a_file_cut_before_any_audio_is_an_empty_wav() {
        let dir = tempfile::tempdir().unwrap();
        let recording = Recording::create(dir.path(), "early").unwrap();
        let path = recording.path().to_path_buf();
        std::mem::forget(recording);
        let (spec, frames) = read_back(&path);
        assert_eq!(spec.channels, 2);
        assert!(frames.is_empty());
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: refused even for root.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let err = Recording::create(&not_a_dir, "call").unwrap_err();
        assert!(matches!(err, RecordError::Create { .. }), "{err}");
        let err = Recording::create(&dir.path().join("missing"), "call").unwrap_err();
        assert!(matches!(err, RecordError::Create { .. }), "{err}");

        // Through the sink the failure is counted and pushing stays harmless.
        let counters = Arc::new(RecorderCounters::default());
        let t0 = Instant::now();
        let sink = RecordingSink::start(&not_a_dir, "call", t0, counters.clone()).unwrap();
        for i in 0..500 {
            sink.push(t0 + PTIME * (i + 1), Side::Agent, &chunk(1));
        }
        sink.close(t0 + Duration::from_secs(10)).join().unwrap();
        assert_eq!(counters.errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let Ok(full) = OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let err = Recording::from_file(PathBuf::from("/dev/full"), full).unwrap_err();
        assert!(matches!(err, RecordError::Write(_)), "{err}");
    }
}
