#!/usr/bin/env bash
# The GPU check (issue 22; docs/gpu-check.md): AMP training, DDP over NCCL, CUDA generation RTF and
# the nv-wavenet export's reference check, in at most 8 minutes on one GPU; one summary table.
#
#   bash scripts/gpu-check.sh [--dry-run] [--json PATH] [--sections a,b,c,d] [--budget-seconds S]
#
# Needs no install of this repository: the repository root goes on PYTHONPATH. PYTHON picks the
# interpreter (default python3). The logic is scripts/gpu_check.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "gpu-check: error: $python not found (set PYTHON to a Python 3 with torch)" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
exec "$python" "$root/scripts/gpu_check.py" "$@"
