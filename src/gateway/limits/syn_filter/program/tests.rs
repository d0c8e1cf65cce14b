//! The program run by a small interpreter of the opcodes it uses, on crafted packets (the real
//! kernel runs it in `tests/syn_filter.rs` and in `super::super::tests`).

use super::*;

/// A packet as the filter sees it: the IP header and the TCP header.
struct Packet {
    ip: Vec<u8>,
    tcp: Vec<u8>,
}

const FIN: u8 = 0x01;
const SYN_FLAG: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn tcp_header(flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp.extend_from_slice(b"payload");
    tcp
}

fn v4(source: u32, flags: u8, options: usize) -> Packet {
    let mut ip = vec![0u8; 20 + 4 * options];
    ip[0] = 0x40 | (5 + options as u8);
    ip[9] = 6;
    ip[12..16].copy_from_slice(&source.to_be_bytes());
    ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
    Packet {
        ip,
        tcp: tcp_header(flags),
    }
}

fn v6(source: u128, flags: u8) -> Packet {
    let mut ip = vec![0u8; 40];
    ip[0] = 0x60;
    ip[6] = 6;
    ip[8..24].copy_from_slice(&source.to_be_bytes());
    Packet {
        ip,
        tcp: tcp_header(flags),
    }
}

/// Runs `program` on `packet` as the kernel would: the value returned (0: dropped).
fn run(program: &[Insn], packet: &Packet) -> u32 {
    execute(program, packet).0
}

/// The value returned and the instructions executed. Panics on anything the kernel's checker
/// would refuse (a jump out of the program, an unknown opcode, falling off the end).
fn execute(program: &[Insn], packet: &Packet) -> (u32, usize) {
    assert!(
        program.len() <= BPF_MAXINSNS,
        "{} instructions",
        program.len()
    );
    let load = |k: u32, size: usize| -> Option<u32> {
        let offset = k as i32;
        let (bytes, at) = if offset < 0 {
            (&packet.ip, (offset - SKF_NET_OFF) as usize)
        } else {
            (&packet.tcp, offset as usize)
        };
        let slice = bytes.get(at..at + size)?;
        Some(slice.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
    };
    let (mut a, mut mem, mut pc, mut steps) = (0u32, [0u32; 16], 0usize, 0usize);
    loop {
        let i = *program.get(pc).expect("the program ran off its end");
        pc += 1;
        steps += 1;
        match i.code {
            LD_W_ABS | LD_B_ABS => {
                let size = if i.code == LD_W_ABS { 4 } else { 1 };
                match load(i.k, size) {
                    Some(v) => a = v,
                    None => return (0, steps),
                }
            }
            LD_MEM => a = mem[i.k as usize],
            ST => mem[i.k as usize] = a,
            ALU_AND_K => a &= i.k,
            ALU_RSH_K => a >>= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JGT_K => pc += usize::from(if a > i.k { i.jt } else { i.jf }),
            RET_K => return (i.k, steps),
            code => panic!("opcode {code:#x} at {}", pc - 1),
        }
        assert!(pc < program.len(), "jump past the end at {}", pc - 1);
    }
}

/// Keys from a small generator (no randomness crate needed for a reproducible spread).
fn spread(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    let mut keys: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn v4_keys(n: usize, seed: u64) -> Vec<u32> {
    let mut keys: Vec<u32> = spread(n, seed).into_iter().map(|k| k as u32).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

const EVERY_FLAGS_BUT_BARE_SYN: [u8; 7] =
    [ACK, SYN_FLAG | ACK, FIN | ACK, RST, RST | ACK, PSH | ACK, 0];

#[test]
fn a_blocked_source_loses_its_syns_and_nothing_else() {
    let blocked = u32::from_be_bytes([127, 0, 0, 100]);
    let program = syn_filter_program(&[blocked], &[]);
    assert_eq!(run(&program, &v4(blocked, SYN_FLAG, 0)), 0);
    assert_eq!(run(&program, &v4(blocked, SYN_FLAG | PSH, 0)), 0);
    for flags in EVERY_FLAGS_BUT_BARE_SYN {
        assert_eq!(
            run(&program, &v4(blocked, flags, 0)),
            PASS,
            "flags {flags:#x}"
        );
    }
    assert_eq!(run(&program, &v4(blocked + 1, SYN_FLAG, 0)), PASS);
    assert_eq!(run(&program, &v4(blocked - 1, SYN_FLAG, 0)), PASS);
}

#[test]
fn ip_options_move_nothing_the_program_reads() {
    let blocked = u32::from_be_bytes([10, 0, 0, 7]);
    let program = syn_filter_program(&[blocked], &[]);
    for options in [0, 1, 10] {
        assert_eq!(run(&program, &v4(blocked, SYN_FLAG, options)), 0);
        assert_eq!(run(&program, &v4(blocked, ACK, options)), PASS);
    }
}

#[test]
fn every_listed_source_is_dropped_and_its_neighbours_pass_at_every_size() {
    for (n, seed) in [
        (1, 1),
        (2, 2),
        (7, 3),
        (8, 4),
        (9, 5),
        (17, 6),
        (255, 7),
        (300, 8),
        (MAX_V4, 9),
    ] {
        let keys = v4_keys(n, seed);
        let program = syn_filter_program(&keys, &[]);
        for &key in &keys {
            assert_eq!(
                run(&program, &v4(key, SYN_FLAG, 0)),
                0,
                "{n} keys, {key:#x} passed"
            );
            assert_eq!(run(&program, &v4(key, ACK, 0)), PASS);
            for near in [key.wrapping_sub(1), key.wrapping_add(1)] {
                let want = if keys.binary_search(&near).is_ok() {
                    0
                } else {
                    PASS
                };
                assert_eq!(
                    run(&program, &v4(near, SYN_FLAG, 0)),
                    want,
                    "{n} keys, {near:#x}"
                );
            }
        }
        for probe in [0, u32::MAX, 0x7f00_0001] {
            let want = if keys.binary_search(&probe).is_ok() {
                0
            } else {
                PASS
            };
            assert_eq!(run(&program, &v4(probe, SYN_FLAG, 0)), want);
        }
    }
}

#[test]
fn ipv6_sources_are_dropped_by_their_64() {
    for (n, seed) in [(1, 11), (8, 12), (9, 13), (100, 14), (MAX_V6, 15)] {
        let prefixes = spread(n, seed);
        let program = syn_filter_program(&[], &prefixes);
        for &prefix in &prefixes {
            let address = (u128::from(prefix) << 64) | 0xdead_beef;
            assert_eq!(
                run(&program, &v6(address, SYN_FLAG)),
                0,
                "{prefix:#x} passed"
            );
            assert_eq!(
                run(&program, &v6(address | u128::from(u64::MAX), SYN_FLAG)),
                0
            );
            assert_eq!(run(&program, &v6(address, ACK)), PASS);
            // The same high word with another low word, and the next /64.
            for other in [prefix ^ 1, prefix.wrapping_add(1), prefix ^ (1 << 40)] {
                let want = if prefixes.binary_search(&other).is_ok() {
                    0
                } else {
                    PASS
                };
                let address = u128::from(other) << 64;
                assert_eq!(run(&program, &v6(address, SYN_FLAG)), want, "{other:#x}");
            }
        }
    }
}

#[test]
fn ipv4_and_ipv6_lists_do_not_mix() {
    let program = syn_filter_program(&[0x0a00_0001], &[0x2001_0db8_0000_0001]);
    assert_eq!(run(&program, &v4(0x0a00_0001, SYN_FLAG, 0)), 0);
    assert_eq!(run(&program, &v6(0x2001_0db8_0000_0001 << 64, SYN_FLAG)), 0);
    // The IPv6 bytes where an IPv4 source would be, and the other way round.
    assert_eq!(
        run(&program, &v6(u128::from(0x0a00_0001u32) << 96, SYN_FLAG)),
        PASS
    );
    assert_eq!(run(&program, &v4(0x2001_0db8, SYN_FLAG, 0)), PASS);
    let empty = syn_filter_program(&[], &[]);
    assert_eq!(run(&empty, &v4(0x0a00_0001, SYN_FLAG, 0)), PASS);
    assert_eq!(run(&empty, &v6(1, SYN_FLAG)), PASS);
}

#[test]
fn a_full_list_fits_the_kernel_limit_and_costs_little_per_packet() {
    let v4 = v4_keys(MAX_V4 + 40, 21);
    let v4 = &v4[..MAX_V4];
    let v6 = spread(MAX_V6, 22);
    let program = syn_filter_program(v4, &v6);
    assert!(
        program.len() <= BPF_MAXINSNS,
        "{} instructions",
        program.len()
    );
    // A data packet: four instructions, whatever the list.
    let counted = execute(&program, &v4_packet_with(ACK)).1;
    assert_eq!(counted, 4);
    // A SYN: a tree walk, not a scan of 1,024 keys.
    let steps = execute(&program, &v4_packet_with(SYN_FLAG)).1;
    assert!(steps < 40, "{steps} instructions for one SYN");
}

fn v4_packet_with(flags: u8) -> Packet {
    v4(0x0102_0304, flags, 0)
}
