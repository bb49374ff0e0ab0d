//go:build !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package hostreader

// hostLittleEndian: region words are little-endian; this machine is not
// (or not known to be), so every word is byte-swapped.
const hostLittleEndian = false
