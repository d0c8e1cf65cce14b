//! The classic BPF program that drops bare SYNs from blocked sources on a listening socket: a
//! pure function from the sorted blocklist to instructions, no socket here.
//!
//! Where it runs: `tcp_v4_rcv`/`tcp_v6_rcv` call `tcp_filter` on the socket a packet was
//! matched to before the `TCP_LISTEN` branch, with `skb->data` at the TCP header; a packet
//! the program answers 0 for is dropped before a request socket exists. Offsets are therefore
//! relative to the TCP header (byte 13: the flags) and, through `SKF_NET_OFF`, to the IP
//! header (version nibble, source address), so IP options and IPv6 extension headers need no
//! parsing.
//!
//! Invariants: every packet that is not a bare SYN (SYN set, ACK clear) passes after four
//! instructions, because accepted sockets inherit the listener's program; a SYN is dropped
//! iff its source (IPv4, or the /64 of IPv6) is in the list; at most [`MAX_V4`] + [`MAX_V6`]
//! entries, which stays under the kernel's 4,096 instructions ([`BPF_MAXINSNS`]); the lookup is
//! a comparison tree, O(log n) down to leaves of [`LEAF`] keys.

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

/// Blocked IPv4 sources the program holds at most.
pub(crate) const MAX_V4: usize = 1024;
/// Blocked IPv6 /64 prefixes the program holds at most.
pub(crate) const MAX_V6: usize = 256;
/// The kernel's limit on a classic program's length.
pub(crate) const BPF_MAXINSNS: usize = 4096;
/// Keys compared one by one at the bottom of the tree.
const LEAF: usize = 8;

// The opcodes used (linux/filter.h, linux/bpf_common.h).
pub(crate) const LD_W_ABS: u16 = 0x20; // A = u32 at [k]
pub(crate) const LD_B_ABS: u16 = 0x30; // A = u8 at [k]
pub(crate) const LD_MEM: u16 = 0x60; // A = M[k]
pub(crate) const ST: u16 = 0x02; // M[k] = A
pub(crate) const ALU_AND_K: u16 = 0x54; // A &= k
pub(crate) const ALU_RSH_K: u16 = 0x74; // A >>= k
pub(crate) const JA: u16 = 0x05; // pc += k
pub(crate) const JEQ_K: u16 = 0x15; // pc += (A == k) ? jt : jf
pub(crate) const JGT_K: u16 = 0x25; // pc += (A > k) ? jt : jf
pub(crate) const RET_K: u16 = 0x06; // return k

/// `SKF_NET_OFF`: loads at this offset plus n read the network (IP) header's byte n.
pub(crate) const SKF_NET_OFF: i32 = -0x10_0000;
/// What a passing packet returns: keep all of it.
const PASS: u32 = u32::MAX;
/// TCP flags byte within the TCP header, and the two flags looked at.
const TCP_FLAGS: u32 = 13;
const SYN_ACK_MASK: u32 = 0x12;
const SYN: u32 = 0x02;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

const fn net(offset: i32) -> u32 {
    (SKF_NET_OFF + offset) as u32
}

/// The program dropping bare SYNs from `v4` and from the /64 prefixes `v6` (each sorted,
/// without duplicates, at most [`MAX_V4`] and [`MAX_V6`]). Both empty: no program is needed
/// (the caller detaches instead), but the one returned passes everything.
pub(crate) fn syn_filter_program(v4: &[u32], v6: &[u64]) -> Vec<Insn> {
    debug_assert!(v4.windows(2).all(|w| w[0] < w[1]) && v6.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(v4.len() <= MAX_V4 && v6.len() <= MAX_V6);
    let v4_tree = if v4.is_empty() {
        vec![insn(RET_K, 0, 0, PASS)]
    } else {
        let mut block = vec![insn(LD_W_ABS, 0, 0, net(12))];
        block.extend(tree_v4(v4));
        block
    };
    let v6_tree = if v6.is_empty() {
        vec![insn(RET_K, 0, 0, PASS)]
    } else {
        // The /64 prefix as two words in scratch memory: M[0] high, M[1] low.
        let mut block = vec![
            insn(LD_W_ABS, 0, 0, net(8)),
            insn(ST, 0, 0, 0),
            insn(LD_W_ABS, 0, 0, net(12)),
            insn(ST, 0, 0, 1),
        ];
        block.extend(tree_v6(v6));
        block
    };
    let mut program = vec![
        insn(LD_B_ABS, 0, 0, TCP_FLAGS),
        insn(ALU_AND_K, 0, 0, SYN_ACK_MASK),
        insn(JEQ_K, 1, 0, SYN),
        insn(RET_K, 0, 0, PASS),
        insn(LD_B_ABS, 0, 0, net(0)),
        insn(ALU_RSH_K, 0, 0, 4),
        insn(JEQ_K, 3, 0, 4), // IPv4: to its block
        insn(JEQ_K, 1, 0, 6), // IPv6: over the IPv4 block
        insn(RET_K, 0, 0, PASS),
        insn(JA, 0, 0, v4_tree.len() as u32),
    ];
    program.extend(v4_tree);
    program.extend(v6_tree);
    debug_assert!(program.len() <= BPF_MAXINSNS);
    program
}

/// `jgt #split` to the right subtree (keys above `split`), the left one following at once.
/// Subtrees are relocatable (their only exits are `ret`), so they are built apart and joined.
fn join_v4(split: u32, left: Vec<Insn>, right: Vec<Insn>) -> Vec<Insn> {
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(jump) => out.push(insn(JGT_K, jump, 0, split)),
        Err(_) => {
            out.push(insn(JGT_K, 0, 1, split));
            out.push(insn(JA, 0, 0, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// The tree for sorted IPv4 keys, with the source address in A.
fn tree_v4(keys: &[u32]) -> Vec<Insn> {
    if keys.len() <= LEAF {
        let n = keys.len();
        let mut out: Vec<Insn> = (0..n)
            .map(|i| insn(JEQ_K, (n - i) as u8, 0, keys[i]))
            .collect();
        out.push(insn(RET_K, 0, 0, PASS));
        out.push(insn(RET_K, 0, 0, 0));
        return out;
    }
    let mid = keys.len() / 2;
    join_v4(keys[mid - 1], tree_v4(&keys[..mid]), tree_v4(&keys[mid..]))
}

/// The tree for sorted /64 prefixes, with the prefix's high word in M[0] and low in M[1].
fn tree_v6(keys: &[u64]) -> Vec<Insn> {
    if keys.len() <= LEAF {
        let n = keys.len();
        let mut out = Vec::with_capacity(4 * n + 2);
        for (i, &key) in keys.iter().enumerate() {
            let (high, low) = ((key >> 32) as u32, key as u32);
            out.push(insn(LD_MEM, 0, 0, 0));
            out.push(insn(JEQ_K, 0, 2, high));
            out.push(insn(LD_MEM, 0, 0, 1));
            // To the drop at 4n + 1 from this instruction at 4i + 3.
            out.push(insn(JEQ_K, (4 * (n - i) - 3) as u8, 0, low));
        }
        out.push(insn(RET_K, 0, 0, PASS));
        out.push(insn(RET_K, 0, 0, 0));
        return out;
    }
    let mid = keys.len() / 2;
    let split = keys[mid - 1];
    let (high, low) = ((split >> 32) as u32, split as u32);
    let left = tree_v6(&keys[..mid]);
    let right = tree_v6(&keys[mid..]);
    // Right iff (hi, lo) > split: hi above, or hi equal and lo above.
    let mut out = vec![
        insn(LD_MEM, 0, 0, 0),
        insn(JGT_K, 3, 0, high), // -> ja right
        insn(JEQ_K, 0, 3, high), // below -> left
        insn(LD_MEM, 0, 0, 1),
        insn(JGT_K, 0, 1, low), // above -> ja right, else left
        insn(JA, 0, 0, left.len() as u32),
    ];
    out.extend(left);
    out.extend(right);
    out
}

#[cfg(test)]
mod tests;
