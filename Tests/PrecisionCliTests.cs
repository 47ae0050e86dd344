using System.Text.Json;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// --precision on every verb that computes, and `tp7 bench gemm`: bad values and devices that compute in fp32 only are
/// refused before any work, in one line that names the option and the device; the GEMM bench validates, then prints
/// one table.
/// </summary>
public sealed class PrecisionCliTests(ITestOutputHelper log)
{
    /// <summary>Refused while parsing: exit 2, the line and the pointer to --help, nothing on stdout.</summary>
    [Theory]
    [InlineData(new[] { "run", "--precision", "tf33" }, "tp7 run: --precision: 'tf33' is not one of fp32, tf32, fp16, bf16")]
    [InlineData(new[] { "run", "--device", "cpu", "--precision", "tf32" },
        "tp7 run: --precision tf32 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "extract", "--device", "opencl", "--precision", "bf16", "--data", "d", "--out", "f.npy" },
        "tp7 extract: --precision bf16 needs a CUDA GPU of compute capability 8.0 or newer; --device opencl computes in fp32")]
    [InlineData(new[] { "sweep", "--device", "ilgpu-cpu", "--precision", "fp16" },
        "tp7 sweep: --precision fp16 needs a CUDA GPU of compute capability 8.0 or newer; --device ilgpu-cpu computes in fp32")]
    [InlineData(new[] { "classify", "--device", "cpu", "--precision", "fp16", "x.jpg" },
        "tp7 classify: --precision fp16 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "featuremaps", "x.jpg", "--out", "m.png", "--device", "cpu", "--precision", "bf16" },
        "tp7 featuremaps: --precision bf16 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "finetune", "--device", "cpu", "--precision", "tf32" },
        "tp7 finetune: --precision tf32 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "bench", "forward", "--device", "cpu", "--precision", "tf32" },
        "tp7 bench forward: --precision tf32 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "bench", "train", "--device", "cpu", "--precision", "PF16" }, "tp7 bench train: --precision: 'PF16' is not one of fp32, tf32, fp16, bf16")]
    [InlineData(new[] { "selftest", "--device", "ilgpu-cpu", "--precision", "tf32" },
        "tp7 selftest: --precision tf32 needs a CUDA GPU of compute capability 8.0 or newer; --device ilgpu-cpu computes in fp32")]
    [InlineData(new[] { "bench", "gemm", "--device", "cpu", "--precision", "bf16" },
        "tp7 bench gemm: --precision bf16 needs a CUDA GPU of compute capability 8.0 or newer; --device cpu computes in fp32")]
    [InlineData(new[] { "bench", "gemm", "--versions", "v2,v9" },
        "tp7 bench gemm: --versions: 'v9' is not a GEMM version (known: V1Naive, V2Tiled, V3Tiled128, V4MmaTf32, V4MmaF16, V4MmaBf16)")]
    [InlineData(new[] { "bench", "gemm", "--versions", "v4" },
        "tp7 bench gemm: --versions: 'v4' matches V4MmaTf32 and V4MmaF16 and V4MmaBf16; name one")]
    [InlineData(new[] { "bench", "gemm", "--size", "0" }, "tp7 bench gemm: --size must be at least 1, got 0")]
    public void RefusedWhileParsing(string[] args, string error)
    {
        using var tmp = new ScratchDir("tp7-precision-parse");
        var r = CliRunner.Run(tmp.Path, args);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal([error, $"(see '{error[..error.IndexOf(':')]} --help')"], r.StderrLines);
        Assert.Equal("", r.Stdout);
    }

    static bool HasCudaDevice(string dir)
    {
        using var devices = JsonDocument.Parse(CliRunner.RunOk(dir, ["devices", "--json"]).Stdout);
        return devices.RootElement.EnumerateArray().Any(d => d.GetProperty("device").GetString() == "cuda");
    }

    /// <summary>
    /// --device auto (the default) or cuda with a reduced precision on a machine without CUDA: exit 1, one line naming
    /// the option and what auto found, before the dataset is listed or a weight is read (no "data:" line).
    /// </summary>
    [Theory]
    [InlineData(new[] { "run", "--precision", "tf32" }, "tp7 run", "auto")]
    [InlineData(new[] { "extract", "--precision", "fp16", "--data", "d", "--out", "f.npy" }, "tp7 extract", "auto")]
    [InlineData(new[] { "finetune", "--precision", "bf16", "--out", "ft" }, "tp7 finetune", "auto")]
    [InlineData(new[] { "bench", "forward", "--device", "cuda", "--precision", "tf32" }, "tp7 bench forward", "cuda")]
    public void RefusedWithoutACudaGpuBeforeAnyWork(string[] args, string verb, string device)
    {
        using var tmp = new ScratchDir("tp7-precision-nocuda");
        if (HasCudaDevice(tmp.Path))
        {
            log.WriteLine("this machine has a CUDA device: the refusal depends on its compute capability, which the GPU check covers");
            return;
        }
        var r = CliRunner.Run(tmp.Path, args);
        Assert.True(r.ExitCode == 1, r.ToString());
        string p = args[Array.IndexOf(args, "--precision") + 1];
        Assert.Equal([$"{verb}: --precision {p} needs a CUDA GPU of compute capability 8.0 or newer; --device {device} found no CUDA device here, " +
                      "and the host backend and OpenCL compute in fp32"], r.StderrLines);
        Assert.DoesNotContain("data:", r.Stdout);
    }

    /// <summary>On the host backend `bench gemm` times the host GEMM after checking it in full at an odd size.</summary>
    [Fact]
    public void BenchGemmOnTheHostValidatesThenPrintsOneRow()
    {
        using var tmp = new ScratchDir("tp7-bench-gemm");
        var r = CliRunner.RunOk(tmp.Path, ["bench", "gemm", "--device", "cpu", "--size", "96", "--reps", "2"]);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("gemm C = A·B, 96x96x96, fp32 in memory, host backend", lines[0]);
        var row = Assert.Single(lines, l => l.Contains("host V2Blocked"));
        Assert.Contains("ok at 509x515x523 vs V1Naive", row);
        Assert.Matches(@"│\s+fp32\s+│\s+[0-9.]+\s+│\s+[0-9.]+\s+│", row);
        var g = CliRunner.Run(tmp.Path, ["bench", "gemm", "--device", "cpu", "--versions", "v2"]);
        Assert.Equal(1, g.ExitCode);
        Assert.Equal(["tp7 bench gemm: --versions names GPU kernel versions; --device cpu times the host GEMM (V2Blocked)"], g.StderrLines);
    }
}
