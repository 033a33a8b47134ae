"""xmbench: the library the Snakemake rules call (data, models, pretraining loop, splits, results)."""
import warnings

# spconv 2.3 decorates its autograd functions with torch.cuda.amp APIs that torch 2.x deprecates;
# the warning says nothing about our code and floods every log.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"spconv(\..*)?")
warnings.filterwarnings("ignore", message=r"is_fx_tracing", category=UserWarning)

import logging

# torch.fx logs a deprecation notice each time spconv's modules are traced for their signature.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)

from . import spconv_cpu

# spconv's CUDA kernel tables cost ~8.5 s of CPU per process at import; without CUDA none is used
spconv_cpu.install()
