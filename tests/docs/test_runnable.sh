#!/usr/bin/env bash
# The commands of README.md and docs/*.md run as written (docs/testing.md, "The docs test").
#
#  1. Every shell block is fenced and says whether it runs here: ```sh runnable (run by this test) or ```sh with a
#     line `# not runnable: <reason>` (a real download, a GPU, Slurm, a build of minutes). A command line in an
#     indented block, or a ```sh block that is neither, fails: nothing is left unclassified.
#  2. A fresh "clone" (the tracked and untracked-not-ignored files of the source tree) in a temporary directory,
#     HOME there too, build/release pointing at the tested build, and PATH=$HOME/.local/bin:$PATH.
#  3. Every runnable block, README.md first, then docs/*.md in name order, each in `bash -euo pipefail` from the
#     clone's root, in one clone (later pages use the demo run the README made). jobs/demo.yaml is shortened to
#     train.max_steps 40 so the whole test fits about 3 minutes on 2 cores; nothing else is changed.
#     ```python runnable blocks run with /usr/bin/python3 when it has the modules they import, else they are
#     reported as skipped (with the module).
set -uo pipefail
src=${ORPO_SOURCE_DIR:?}
build=${ORPO_BUILD_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-docs-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cd "$src" || exit 1
pages=(README.md $(ls docs/*.md))

# ---- 1. every command block is classified ---------------------------------------------------------
for p in "${pages[@]}"; do
    # indented code lines that start with a command (outside fences)
    awk -v P="$p" '
        /^```/ { fence = !fence; next }
        !fence && /^    +(orpo-hpc|make|sbatch|cmake|ctest|python3|scripts\/|squeue|sacct|scancel|git|huggingface-cli|hf|wget|curl|pip) / {
            printf "FAIL: %s:%d: a command in an indented block (fence it as ```sh runnable, or ```sh with \"# not runnable: why\"): %s\n", P, NR, $0 }
    ' "$p"
    # ```sh / ```bash / ```console blocks: runnable, or saying why not
    awk -v P="$p" '
        /^```/ && !fence { fence = 1; info = substr($0, 4); start = NR; why = 0; cmd = 0; next }
        /^```/ && fence { fence = 0
            if ((info ~ /^(sh|bash|console|shell)/ || (info == "" && cmd)) && info !~ /runnable/ && !why)
                printf "FAIL: %s:%d: a ```%s block neither marked runnable nor saying \"# not runnable: why\"\n", P, start, info
            next }
        fence && /# not runnable: / { why = 1 }
        fence && /^(orpo-hpc|make|sbatch|cmake|ctest|python3|scripts\/|squeue|sacct|scancel|git|huggingface-cli|hf|wget|curl|pip|vllm) / { cmd = 1 }
    ' "$p"
done >"$tmp/classify.txt"
if [ -s "$tmp/classify.txt" ]; then cat "$tmp/classify.txt"; fails=$((fails + $(wc -l <"$tmp/classify.txt"))); fi

# ---- 2. a fresh clone, HOME and PATH -------------------------------------------------------------
clone="$tmp/clone"
mkdir -p "$clone/build" "$tmp/home"
git -C "$src" ls-files -z -c -o --exclude-standard | (cd "$src" && xargs -0 cp --parents -t "$clone" 2>/dev/null)
[ -e "$clone/jobs/demo.yaml" ] || { fail "the clone has no jobs/demo.yaml"; exit 1; }
ln -s "$build" "$clone/build/release"
export HOME="$tmp/home" PATH="$tmp/home/.local/bin:$PATH" ORPO_LOG=info
unset ORPO_BIN
# shorter demo training: only train.max_steps is added
sed -i 's/^train:$/train:\n  max_steps: 40                     # (added by the docs test: 40 steps instead of ~1,700)/' \
    "$clone/jobs/demo.yaml"
grep -q '^  max_steps: 40' "$clone/jobs/demo.yaml" || fail "could not shorten jobs/demo.yaml"

# ---- 3. the runnable blocks ----------------------------------------------------------------------
t0=$SECONDS
nrun=0 nskip=0
for p in "${pages[@]}"; do
    # each block to $tmp/blocks/<page>.<n>.<lang>, with its first line number in the name's companion file
    rm -rf "$tmp/blocks"
    mkdir -p "$tmp/blocks"
    awk -v D="$tmp/blocks" '
        /^```/ && !fence { fence = 1; info = substr($0, 4); run = info ~ /runnable/
            lang = info; sub(/ .*/, "", lang); n++; f = sprintf("%s/%03d.%s", D, n, lang)
            if (run) printf "%d\n", NR + 1 > (f ".line"); next }
        /^```/ && fence { fence = 0; run = 0; next }
        fence && run { print > f }
    ' "$p"
    for b in $(ls "$tmp/blocks" | grep -v '\.line$' | sort); do
        line=$(cat "$tmp/blocks/$b.line" 2>/dev/null) || continue
        lang=${b##*.}
        where="$p:$line"
        case $lang in
        sh | bash | console | shell)
            (cd "$clone" && timeout 300 bash -euo pipefail "$tmp/blocks/$b") >"$tmp/out" 2>&1
            rc=$?
            ;;
        python)
            mods=$(sed -n 's/^\(import\|from\) \([A-Za-z0-9_., ]*\).*/\2/p' "$tmp/blocks/$b" |
                   sed 's/ as [A-Za-z_]*//g; s/ import.*//' | tr ',' '\n' | tr -d ' ' | cut -d. -f1 | sort -u)
            missing=""
            for m in $mods; do /usr/bin/python3 -c "import $m" 2>/dev/null || missing="$missing $m"; done
            if [ -n "$missing" ]; then
                echo "skipped $where (python): /usr/bin/python3 lacks$missing"
                nskip=$((nskip + 1))
                continue
            fi
            (cd "$clone" && timeout 300 /usr/bin/python3 "$tmp/blocks/$b") >"$tmp/out" 2>&1
            rc=$?
            ;;
        *) fail "$where: runnable block of unknown language '$lang'"; continue ;;
        esac
        nrun=$((nrun + 1))
        if [ $rc -ne 0 ]; then
            fail "$where: exit $rc; the block:"
            sed 's/^/    | /' "$tmp/blocks/$b"
            echo "  its output (last 30 lines):"
            tail -30 "$tmp/out" | sed 's/^/    > /'
        else
            echo "ok $where ($((SECONDS - t0)) s)"
        fi
    done
done
[ $nrun -gt 0 ] || fail "no runnable block found"
echo "$nrun blocks run, $nskip skipped, $fails failed, $((SECONDS - t0)) s"
[ $fails -eq 0 ]
