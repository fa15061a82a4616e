//! A minimal AVI (RIFF) writer: Motion-JPEG video + 16-bit PCM audio, interleaved, with an idx1
//! index. Why AVI/MJPEG/PCM: it needs no system library and no patent-encumbered or non-free
//! encoder, every common player (VLC, mpv, ffmpeg/ffplay, Windows Media Player, GStreamer-based
//! players) opens it, and the file is written in one pass. No maintained pure-Rust crate offers an
//! encoder + muxer pair with audio for MP4/WebM without C libraries, so this is ~200 lines of
//! our own (see docs/DECISIONS.md).
//!
//! The file is written to `NAME.partial` and renamed over `NAME` only by [`AviWriter::finish`],
//! so an interrupted render never leaves a file that pretends to be complete.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct AviWriter {
    out: BufWriter<File>,
    final_path: PathBuf,
    partial_path: PathBuf,
    width: u32,
    height: u32,
    fps: u32,
    audio_rate: u32,
    frames: u32,
    audio_samples: u64,
    max_chunk: u32,
    movi_start: u64,
    index: Vec<IndexEntry>,
    offsets: HeaderOffsets,
}

struct IndexEntry {
    id: [u8; 4],
    offset: u32,
    size: u32,
}

/// Positions of the header fields that are only known at the end.
#[derive(Default)]
struct HeaderOffsets {
    riff_size: u64,
    avih_total_frames: u64,
    avih_suggested_buffer: u64,
    video_length: u64,
    audio_length: u64,
    movi_size: u64,
}

impl AviWriter {
    pub fn create(path: &Path, width: u32, height: u32, fps: u32, audio_rate: u32) -> std::io::Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial_path = PathBuf::from(partial);
        let file = File::create(&partial_path)?;
        let mut w = AviWriter {
            out: BufWriter::new(file),
            final_path: path.to_path_buf(),
            partial_path,
            width,
            height,
            fps,
            audio_rate,
            frames: 0,
            audio_samples: 0,
            max_chunk: 0,
            movi_start: 0,
            index: Vec::new(),
            offsets: HeaderOffsets::default(),
        };
        w.write_headers()?;
        Ok(w)
    }

    fn pos(&mut self) -> std::io::Result<u64> {
        self.out.stream_position()
    }

    fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.out.write_all(&v.to_le_bytes())
    }

    fn u16(&mut self, v: u16) -> std::io::Result<()> {
        self.out.write_all(&v.to_le_bytes())
    }

    fn write_headers(&mut self) -> std::io::Result<()> {
        self.out.write_all(b"RIFF")?;
        self.offsets.riff_size = self.pos()?;
        self.u32(0)?;
        self.out.write_all(b"AVI LIST")?;
        // hdrl = 4 + avih(8+56) + video strl(12 + 8+56 + 8+40) + audio strl(12 + 8+56 + 8+18)
        let strl_video = 4 + 8 + 56 + 8 + 40;
        let strl_audio = 4 + 8 + 56 + 8 + 18;
        self.u32(4 + 8 + 56 + 8 + strl_video + 8 + strl_audio)?;
        self.out.write_all(b"hdrl")?;

        self.out.write_all(b"avih")?;
        self.u32(56)?;
        self.u32(1_000_000 / self.fps)?;
        self.u32(self.width * self.height * 3 * self.fps + self.audio_rate * 2)?;
        self.u32(0)?;
        self.u32(0x10 | 0x100)?; // AVIF_HASINDEX | AVIF_ISINTERLEAVED
        self.offsets.avih_total_frames = self.pos()?;
        self.u32(0)?;
        self.u32(0)?;
        self.u32(2)?; // streams
        self.offsets.avih_suggested_buffer = self.pos()?;
        self.u32(0)?;
        self.u32(self.width)?;
        self.u32(self.height)?;
        for _ in 0..4 {
            self.u32(0)?;
        }

        // Video stream: MJPG, rate fps/1.
        self.out.write_all(b"LIST")?;
        self.u32(strl_video)?;
        self.out.write_all(b"strlstrh")?;
        self.u32(56)?;
        self.out.write_all(b"vidsMJPG")?;
        self.u32(0)?;
        self.u16(0)?;
        self.u16(0)?;
        self.u32(0)?;
        self.u32(1)?; // scale
        self.u32(self.fps)?; // rate
        self.u32(0)?;
        self.offsets.video_length = self.pos()?;
        self.u32(0)?;
        self.u32(0)?;
        self.u32(u32::MAX)?; // quality: default
        self.u32(0)?;
        self.u16(0)?;
        self.u16(0)?;
        self.u16(self.width as u16)?;
        self.u16(self.height as u16)?;
        self.out.write_all(b"strf")?;
        self.u32(40)?;
        self.u32(40)?;
        self.u32(self.width)?;
        self.u32(self.height)?;
        self.u16(1)?;
        self.u16(24)?;
        self.out.write_all(b"MJPG")?;
        self.u32(self.width * self.height * 3)?;
        for _ in 0..4 {
            self.u32(0)?;
        }

        // Audio stream: PCM s16le mono.
        self.out.write_all(b"LIST")?;
        self.u32(strl_audio)?;
        self.out.write_all(b"strlstrh")?;
        self.u32(56)?;
        self.out.write_all(b"auds")?;
        self.u32(0)?;
        self.u32(0)?;
        self.u16(0)?;
        self.u16(0)?;
        self.u32(0)?;
        self.u32(1)?; // scale
        self.u32(self.audio_rate)?; // rate: samples per second
        self.u32(0)?;
        self.offsets.audio_length = self.pos()?;
        self.u32(0)?;
        self.u32(self.audio_rate * 2)?;
        self.u32(u32::MAX)?;
        self.u32(2)?; // sample size = block align
        for _ in 0..4 {
            self.u16(0)?;
        }
        self.out.write_all(b"strf")?;
        self.u32(18)?;
        self.u16(1)?; // PCM
        self.u16(1)?;
        self.u32(self.audio_rate)?;
        self.u32(self.audio_rate * 2)?;
        self.u16(2)?;
        self.u16(16)?;
        self.u16(0)?;

        self.out.write_all(b"LIST")?;
        self.offsets.movi_size = self.pos()?;
        self.u32(0)?;
        self.movi_start = self.pos()?;
        self.out.write_all(b"movi")
    }

    fn chunk(&mut self, id: [u8; 4], data: &[u8]) -> std::io::Result<()> {
        let offset = (self.pos()? - self.movi_start) as u32;
        self.out.write_all(&id)?;
        self.u32(data.len() as u32)?;
        self.out.write_all(data)?;
        if data.len() % 2 == 1 {
            self.out.write_all(&[0])?;
        }
        self.max_chunk = self.max_chunk.max(data.len() as u32);
        self.index.push(IndexEntry { id, offset, size: data.len() as u32 });
        Ok(())
    }

    /// One video frame (a complete JPEG) followed by the audio that plays during it.
    pub fn write_frame(&mut self, jpeg: &[u8], audio: &[f32]) -> std::io::Result<()> {
        self.chunk(*b"00dc", jpeg)?;
        self.frames += 1;
        if !audio.is_empty() {
            let pcm: Vec<u8> = audio
                .iter()
                .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
                .collect();
            self.chunk(*b"01wb", &pcm)?;
            self.audio_samples += audio.len() as u64;
        }
        Ok(())
    }

    /// Writes the index, patches the sizes and renames the file into place.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        let movi_end = self.pos()?;
        self.out.write_all(b"idx1")?;
        self.u32(self.index.len() as u32 * 16)?;
        for e in std::mem::take(&mut self.index) {
            self.out.write_all(&e.id)?;
            self.u32(0x10)?; // AVIIF_KEYFRAME: every JPEG and PCM chunk stands alone
            self.u32(e.offset)?;
            self.u32(e.size)?;
        }
        let end = self.pos()?;
        let patches = [
            (self.offsets.riff_size, (end - 8) as u32),
            (self.offsets.avih_total_frames, self.frames),
            (self.offsets.avih_suggested_buffer, self.max_chunk + 8),
            (self.offsets.video_length, self.frames),
            (self.offsets.audio_length, self.audio_samples as u32),
            (self.offsets.movi_size, (movi_end - self.movi_start) as u32),
        ];
        for (at, value) in patches {
            self.out.seek(SeekFrom::Start(at))?;
            self.u32(value)?;
        }
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        std::fs::rename(&self.partial_path, &self.final_path)?;
        Ok(self.final_path.clone())
    }

    /// Drops the unfinished file (on error or interruption).
    pub fn abandon(self) {
        let partial = self.partial_path.clone();
        drop(self);
        let _ = std::fs::remove_file(partial);
    }
}
