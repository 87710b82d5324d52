"""`climate_sft.train` under FSDP2 on CPU, for the two-process tests only (accelerate launch ... tests/fsdp_on_cpu.py).

accelerate runs FSDP on accelerators alone: launched on CPU with fsdp.yaml it quietly trains plain DDP (MULTI_CPU),
so a CPU test of that config would test nothing sharded. Two patches, both for CPU only:
- the FSDP plugin accelerate built from the config is turned back on once the processes have met (FSDP2 itself
  shards on CPU over gloo);
- the final adapter is gathered without accelerate's `cpu_offload=True`: on a CPU-only run the gathered tensors
  come back with a storage that safetensors cannot read ("invalid python storage", torch 2.13), where on GPUs
  the offload copies them to host memory.
"""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType

from climate_sft.train import main

accelerator_state_init = AcceleratorState.__init__


def init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin


def gathered_state_dict(self, model, unwrap=True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


AcceleratorState.__init__ = init_with_fsdp_on_cpu
Accelerator.get_state_dict = gathered_state_dict
if __name__ == "__main__":
    main()
