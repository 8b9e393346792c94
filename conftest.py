"""The test suite's own pytest option: which kind of CPU the package sees.

``--cpu-bf16=native`` runs the suite as on a CPU that reports native bfloat16
units (Intel AMX, AVX512-BF16), where ``dtype="auto"`` means bfloat16;
``--cpu-bf16=none`` as on one without (AVX2 only), where it means float32. The
default, ``host``, keeps what this CPU reports. bfloat16 arithmetic runs on
every CPU (emulated where there are no such units), so one machine checks both
kinds. The choice goes through ``SKLEARN_CLIP_CPU_BF16``, so processes that
tests start (command-line runs, Dask workers, ``torchrun``) see it too.
"""

import os

CHOICES = ("host", "native", "none")


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-bf16",
        choices=CHOICES,
        default="host",
        help="run as on a CPU with native bfloat16 units (native), without "
        "(none), or as this CPU reports (host, the default)",
    )


def pytest_configure(config):
    choice = config.getoption("--cpu-bf16")
    if choice == "host":
        os.environ.pop("SKLEARN_CLIP_CPU_BF16", None)
    else:
        os.environ["SKLEARN_CLIP_CPU_BF16"] = choice
    # A precision forced for the user's own work must not leak into the tests.
    os.environ.pop("SKLEARN_CLIP_AUTO_DTYPE", None)


def pytest_report_header(config):
    from sklearn_clip._backends.torch.precision import cpu_bf16_units

    choice = config.getoption("--cpu-bf16")
    units = ", ".join(cpu_bf16_units()) or "none"
    return f"sklearn-clip: CPU bfloat16 units seen: {units} (--cpu-bf16={choice})"
