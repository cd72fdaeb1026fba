import json
import sys

import numpy as np

a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
for k in [k for k in a["gains"] if k in b["gains"]]:
    d = np.array(a["gains"][k]) - np.array(b["gains"][k])
    print(f"{k:30s} {d.mean():+.3f} ± {d.std(ddof=1)/np.sqrt(len(d)):.3f}  worst img {d.min():+.2f}")
