# Fake set_env.sh: `source` it to put the fake atc, npu-smi and ais_bench in reach, as the real one does for CANN.
_fake_toolkit="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
export ASCEND_TOOLKIT_HOME="${_fake_toolkit}"
export ASCEND_HOME_PATH="${_fake_toolkit}"
export PATH="${_fake_toolkit}/../bin:${PATH}"
export PYTHONPATH="${_fake_toolkit}/../python${PYTHONPATH:+:${PYTHONPATH}}"
unset _fake_toolkit
