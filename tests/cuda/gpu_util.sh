# gpu_util.sh — sourced by the shell tests of label cuda (needs $bin, the orpo-hpc under test).
#   gpu_or_skip     exit 77 with a visible "skipped: ..." line unless `orpo-hpc device` reports a CUDA GPU
#   gpu_demo_start NAME [PAIRS]
#                   gpu_or_skip, then the common start of a test that trains the demo job on the GPU: $tmp (kept
#                   when a check failed), $fails with bad() / code(), ORPO_LOG=info, the job copied to $job
#                   ($tmp/jobs/demo.yaml) and the demo model and data made and imported (tests/demo_inputs.sh; PAIRS
#                   of them), tests/unit/run_compare.sh sourced
gpu_or_skip() {
    local out
    out=$("$bin" device 2>&1)
    if ! grep -q '^CUDA devices: [1-9]' <<<"$out"; then
        echo "skipped: no CUDA GPU usable: $(grep -m1 '^CUDA devices' <<<"$out" || head -2 <<<"$out")"
        exit 77
    fi
}

gpu_demo_start() {
    gpu_or_skip
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-$1-XXXXXX")
    fails=0
    trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
    export ORPO_LOG=info
    mkdir -p "$tmp/jobs"
    cp "$src/jobs/demo.yaml" "$tmp/jobs/demo.yaml"
    job=$tmp/jobs/demo.yaml
    . "$src/tests/demo_inputs.sh"
    demo_inputs "$tmp/demo" ${2:+"$2"}
    . "$src/tests/unit/run_compare.sh"
}
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
code() { [ "$1" = "$2" ] || bad "$3: exit $1, expected $2"; }
