//! eBPF without a toolchain: a small assembler and the bpf(2) commands that
//! berth's programs need (berth-net's connect-time redirect, the cgroup v2
//! device filter of `cgroups::device_program`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A minimal eBPF assembler: the handful of instructions our programs use,
/// with named forward jumps.
pub mod asm {
    use std::collections::HashMap;

    pub const FN_MAP_LOOKUP_ELEM: i32 = 1;
    pub const FN_MAP_UPDATE_ELEM: i32 = 2;

    pub const R0: u8 = 0;
    pub const R1: u8 = 1;
    pub const R2: u8 = 2;
    pub const R3: u8 = 3;
    pub const R4: u8 = 4;
    pub const R5: u8 = 5;
    pub const R6: u8 = 6;
    pub const R7: u8 = 7;
    pub const R10: u8 = 10;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;

    const LDX_MEM: u8 = 0x61;
    const STX_MEM: u8 = 0x63;
    const ST_MEM: u8 = 0x62;
    const ALU64_K: u8 = 0x07;
    const ADD: u8 = 0x00;
    const AND: u8 = 0x50;
    const RSH: u8 = 0x70;
    const MOV: u8 = 0xb0;
    const ALU64_X: u8 = 0x0f;
    const JMP_K: u8 = 0x05;
    const JMP_X: u8 = 0x0d;
    const JEQ: u8 = 0x10;
    const JNE: u8 = 0x50;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const LD_IMM64: u8 = 0x18;
    const PSEUDO_MAP_FD: u8 = 1;

    #[derive(Default)]
    pub struct Asm {
        insns: Vec<u64>,
        labels: HashMap<&'static str, usize>,
        fixups: Vec<(usize, &'static str)>,
        /// Jumps to the next `resolve_pending`.
        pending: Vec<usize>,
    }

    fn encode(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        // struct bpf_insn, little-endian in memory: code, dst:4|src:4, off, imm.
        u64::from_le_bytes({
            let mut b = [0u8; 8];
            b[0] = code;
            b[1] = (dst & 0xf) | (src << 4);
            b[2..4].copy_from_slice(&off.to_le_bytes());
            b[4..8].copy_from_slice(&imm.to_le_bytes());
            b
        })
    }

    impl Asm {
        fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
            self.insns.push(encode(code, dst, src, off, imm));
        }
        fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) {
            self.fixups.push((self.insns.len(), to));
            self.push(code, dst, src, 0, imm);
        }
        pub fn label(&mut self, name: &'static str) {
            self.labels.insert(name, self.insns.len());
        }
        pub fn mov_reg(&mut self, dst: u8, src: u8) {
            self.push(ALU64_X | MOV, dst, src, 0, 0);
        }
        pub fn mov_imm(&mut self, dst: u8, imm: i32) {
            self.push(ALU64_K | MOV, dst, 0, 0, imm);
        }
        pub fn add_imm(&mut self, dst: u8, imm: i32) {
            self.push(ALU64_K | ADD, dst, 0, 0, imm);
        }
        pub fn rsh_imm(&mut self, dst: u8, imm: i32) {
            self.push(ALU64_K | RSH, dst, 0, 0, imm);
        }
        pub fn and_imm(&mut self, dst: u8, imm: i32) {
            self.push(ALU64_K | AND, dst, 0, 0, imm);
        }
        pub fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
            self.push(LDX_MEM | size, dst, src, off, 0);
        }
        pub fn stx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
            self.push(STX_MEM | size, dst, src, off, 0);
        }
        pub fn st(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
            self.push(ST_MEM | size, dst, 0, off, imm);
        }
        pub fn ld_imm64(&mut self, dst: u8, src: u8, imm: i64) {
            self.push(LD_IMM64, dst, src, 0, imm as i32);
            self.push(0, 0, 0, 0, (imm >> 32) as i32);
        }
        pub fn ld_map(&mut self, dst: u8, fd: i32) {
            self.ld_imm64(dst, PSEUDO_MAP_FD, fd as i64);
        }
        /// r0 = map[fp+key_off] (or 0).
        pub fn lookup(&mut self, map: i32, key_off: i32) {
            self.ld_map(R1, map);
            self.mov_reg(R2, R10);
            self.add_imm(R2, key_off);
            self.call(FN_MAP_LOOKUP_ELEM);
        }
        pub fn jeq_imm(&mut self, dst: u8, imm: i32, to: &'static str) {
            self.jump(JMP_K | JEQ, dst, 0, imm, to);
        }
        pub fn jne_imm(&mut self, dst: u8, imm: i32, to: &'static str) {
            self.jump(JMP_K | JNE, dst, 0, imm, to);
        }
        /// if dst != imm: jump to the next `resolve_pending`.
        pub fn jne_imm_pending(&mut self, dst: u8, imm: i32) {
            self.pending.push(self.insns.len());
            self.push(JMP_K | JNE, dst, 0, 0, imm);
        }
        /// if dst == imm: jump to the next `resolve_pending`.
        pub fn jeq_imm_pending(&mut self, dst: u8, imm: i32) {
            self.pending.push(self.insns.len());
            self.push(JMP_K | JEQ, dst, 0, 0, imm);
        }
        /// Points the pending jumps here.
        pub fn resolve_pending(&mut self) {
            let here = self.insns.len();
            for at in std::mem::take(&mut self.pending) {
                let mut b = self.insns[at].to_le_bytes();
                b[2..4].copy_from_slice(&((here - at - 1) as i16).to_le_bytes());
                self.insns[at] = u64::from_le_bytes(b);
            }
        }
        pub fn jne_reg(&mut self, dst: u8, src: u8, to: &'static str) {
            self.jump(JMP_X | JNE, dst, src, 0, to);
        }
        pub fn call(&mut self, helper: i32) {
            self.push(CALL, 0, 0, 0, helper);
        }
        pub fn exit(&mut self) {
            self.push(EXIT, 0, 0, 0, 0);
        }
        /// The program, jumps resolved.
        pub fn finish(mut self) -> Vec<u64> {
            for (at, to) in std::mem::take(&mut self.fixups) {
                let target = self.labels[to];
                let off = (target as i64 - at as i64 - 1) as i16;
                let mut b = self.insns[at].to_le_bytes();
                b[2..4].copy_from_slice(&off.to_le_bytes());
                self.insns[at] = u64::from_le_bytes(b);
            }
            self.insns
        }
    }
}

pub const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
pub const ATTACH_CGROUP_DEVICE: u32 = 6;
/// Lets other programs (a parent cgroup's, systemd's) stay attached too.
pub const F_ALLOW_MULTI: u32 = 2;

const MAP_CREATE: libc::c_long = 0;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const MAP_DELETE_ELEM: libc::c_long = 3;
const PROG_LOAD: libc::c_long = 5;
const PROG_ATTACH: libc::c_long = 8;
const LINK_CREATE: libc::c_long = 28;

/// A zeroed `union bpf_attr`, filled field by field at byte offsets.
#[derive(Default)]
struct Attr([u64; 16]);

impl Attr {
    fn u32(mut self, off: usize, v: u32) -> Self {
        self.bytes()[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Self {
        self.bytes()[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: u64s have no padding and any byte pattern is valid.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), 128) }
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: attr is a 128-byte zero-padded bpf_attr that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), 128u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd(cmd: libc::c_long, mut attr: Attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn map_create(kind: u32, key: u32, value: u32, max: u32, flags: u32) -> io::Result<OwnedFd> {
    let attr = Attr::default()
        .u32(0, kind)
        .u32(4, key)
        .u32(8, value)
        .u32(12, max)
        .u32(16, flags);
    fd(MAP_CREATE, attr)
}

pub fn map_update(map: i32, key: &[u8; 8], value: &[u8; 8]) -> io::Result<()> {
    let mut attr = Attr::default()
        .u32(0, map as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64);
    bpf(MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Deletes a key; a missing one is not an error.
pub fn map_delete(map: i32, key: &[u8; 8]) -> io::Result<()> {
    let mut attr = Attr::default()
        .u32(0, map as u32)
        .u64(8, key.as_ptr() as u64);
    match bpf(MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// Loads a program; a refusal carries the verifier's log.
pub fn prog_load(prog_type: u32, insns: &[u64], expected_attach: u32) -> io::Result<OwnedFd> {
    let license = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; 16 * 1024];
    let attr = Attr::default()
        .u32(0, prog_type)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .u32(68, expected_attach);
    fd(PROG_LOAD, attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        io::Error::new(e.kind(), format!("{e}; verifier: {}", text.trim()))
    })
}

/// A link: the program stays attached while the returned descriptor lives.
pub fn link_create(prog: i32, target: i32, attach: u32) -> io::Result<OwnedFd> {
    let attr = Attr::default()
        .u32(0, prog as u32)
        .u32(4, target as u32)
        .u32(8, attach);
    fd(LINK_CREATE, attr)
}

/// Attaches a program to a cgroup for as long as the cgroup exists.
pub fn prog_attach(prog: i32, cgroup: i32, attach: u32, flags: u32) -> io::Result<()> {
    let mut attr = Attr::default()
        .u32(0, cgroup as u32)
        .u32(4, prog as u32)
        .u32(8, attach)
        .u32(12, flags);
    bpf(PROG_ATTACH, &mut attr).map(|_| ())
}
