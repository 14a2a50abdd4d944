import sys

if __name__ == "__main__":  # not when a spawned worker process (study --executor local) re-imports it
    from .distributed import relaunch_cpu_processes

    relaunch_cpu_processes(module="vlmprobe")  # accelerate launch --cpu --num_processes N -m vlmprobe ...

    from .cli import main

    sys.exit(main())
