"""Write a real CT slice for the lung_nodule_cnn example: pydicom's own test file CT_small.dcm (128 x 128, a CT
downsized from NEMA's WG04 sample set; it ships inside pydicom, MIT, whose notes on the test files state no licence
of their own, so this repository does not copy it). Needs pydicom ([dicom] extra).

    python examples/get_ct_slice.py ct_small.dcm
"""

from __future__ import annotations

import shutil
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python examples/get_ct_slice.py OUT.dcm", file=sys.stderr)
        return 2
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        print("get_ct_slice: needs pydicom: pip install 'medinfer[dicom]'", file=sys.stderr)
        return 9
    shutil.copyfile(get_testdata_file("CT_small.dcm"), argv[0])
    print(f"wrote {argv[0]} (pydicom's CT_small.dcm)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
