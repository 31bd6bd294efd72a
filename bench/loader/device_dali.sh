#!/usr/bin/env bash
# Last call of the DALI streak (DESIGN.md: DALI's wheels exceed one call's carry): joins the
# tar parts carried into /tmp/dali by earlier calls (devbin-loader/dali_part.sh), checks the
# checksum, installs DALI and its needs with --no-deps into /tmp/dsite, then runs the loader
# device script with every feed side by side (DALI included).
set -u
B="$PWD/devbin-loader"
bash "$B/dali_part.sh" >/dev/null
cat /tmp/dali/part-* > /tmp/dali.tar && (cd /tmp && echo "$(cat "$B/dali.sha256" | cut -d' ' -f1)  dali.tar" | sha256sum -c -) || exit 3
rm -rf /tmp/dwh /tmp/dsite && mkdir -p /tmp/dwh && tar xf /tmp/dali.tar -C /tmp/dwh
python3 -m pip install -q --no-deps --no-index --target /tmp/dsite /tmp/dwh/*.whl 2>&1 | tail -2
export EXTRA_PYTHONPATH=/tmp/dsite
PYTHONPATH=/tmp/dsite python3 -c "import nvidia.dali as d; print('DALI', d.__version__)"
SKIP_CPU=1 ONLY="${ONLY:-synthetic,dsprep,dali,torch,alone,dali_alone}" bash "$B/run.sh"
