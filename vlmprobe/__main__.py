import sys

from .distributed import relaunch_cpu_processes

relaunch_cpu_processes(module="vlmprobe")  # accelerate launch --cpu --num_processes N -m vlmprobe ...

from .cli import main  # noqa: E402

sys.exit(main())
