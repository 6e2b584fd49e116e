//! The per-response CPU of the `compress` policy's codecs on a 16 KiB JSON API response
//! (the loadtest payload): gzip level 6, br level 4 and zstd level 3 with the
//! worker's reused state (`EncoderPool`: flate2 `Compress::reset`, zstd context reinit;
//! brotli has no reset, so its figure includes a fresh encoder), against a fresh encoder
//! per response, and the decoding of each. The compression ratios are printed once.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringgate::coding::{decode, Encoder, EncoderPool};
use ringgate::policy::compress::Coding;

/// A JSON list of user objects of about `len` bytes.
fn payload(len: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0u64;
    while out.len() < len {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let entry = format!(
            "{{\"id\":{i},\"uuid\":\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}\",\"name\":\"User {i}\",\
             \"email\":\"user{i}@example.com\",\"created\":\"2026-12-{:02}T10:{:02}:00Z\",\
             \"address\":{{\"city\":\"Springfield\",\"zip\":\"{:05}\"}},\"active\":{}}},",
            x >> 32,
            (x >> 16) & 0xffff,
            x & 0xfff,
            (x >> 12) & 0xfff,
            x & 0xffff_ffff_ffff,
            1 + i % 28,
            i % 60,
            x % 100_000,
            i % 3 == 0
        );
        out.extend_from_slice(entry.as_bytes());
        i += 1;
    }
    out.truncate(len - 1);
    out.push(b']');
    out
}

fn compress(c: &mut Criterion) {
    let body = payload(16 * 1024);
    let mut group = c.benchmark_group("compress_16k_json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let pool = EncoderPool::default();
    for (coding, level) in [(Coding::Gzip, 6), (Coding::Br, 4), (Coding::Zstd, 3)] {
        let mut out = Vec::with_capacity(body.len());
        let mut e = pool.take(coding, level).expect("encoder");
        e.compress(&body, &mut out).expect("compress");
        println!(
            "{}-{level}: {} -> {} bytes, ratio {:.2}",
            coding.token(),
            body.len(),
            out.len(),
            body.len() as f64 / out.len() as f64
        );
        pool.give(e);
        group.bench_function(format!("{}-{level}_reused", coding.token()), |b| {
            b.iter(|| {
                out.clear();
                let mut e = pool.take(coding, level).expect("encoder");
                e.data(black_box(&body), &mut out).expect("data");
                e.finish(&mut out).expect("finish");
                pool.give(e);
                black_box(out.len())
            })
        });
        if coding != Coding::Br {
            group.bench_function(format!("{}-{level}_fresh", coding.token()), |b| {
                b.iter(|| {
                    out.clear();
                    let mut e = Encoder::new(coding, level).expect("encoder");
                    e.compress(black_box(&body), &mut out).expect("compress");
                    black_box(out.len())
                })
            });
        }
        let mut packed = Vec::new();
        Encoder::new(coding, level)
            .expect("encoder")
            .compress(&body, &mut packed)
            .expect("compress");
        let mut plain = Vec::with_capacity(body.len());
        group.bench_function(format!("{}_decode", coding.token()), |b| {
            b.iter(|| {
                plain.clear();
                decode(coding, black_box(&packed), 1 << 20, &mut plain).expect("decode");
                black_box(plain.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compress);
criterion_main!(benches);
