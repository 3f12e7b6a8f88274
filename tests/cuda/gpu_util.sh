# gpu_util.sh — sourced by the shell tests of label cuda (needs $bin, the orpo-hpc under test).
#   gpu_or_skip     exit 77 with a visible "skipped: ..." line unless `orpo-hpc device` reports a CUDA GPU
gpu_or_skip() {
    local out
    out=$("$bin" device 2>&1)
    if ! grep -q '^CUDA devices: [1-9]' <<<"$out"; then
        echo "skipped: no CUDA GPU usable: $(grep -m1 '^CUDA devices' <<<"$out" || head -2 <<<"$out")"
        exit 77
    fi
}
