using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// What is particular to OpenCL (in CI: PoCL 3.1 with <see cref="OpenCl.PoclOptIn"/>'s adaptation): the whole VGG16 at
/// 32x32 through the kernel versions a user gets there (the tiled ones) against PyTorch's taps and the host backend's,
/// the one kernel PoCL cannot build refused with the compiler's reason, and `tp7 devices` / `tp7 selftest --device
/// opencl` with and without the opt-in. The per-kernel checks against the host twins are the *OnOpenCl subclasses of
/// GpuOpsTests, GpuBackwardOpsTests, ConvGeneralTests, PoolingGeneralTests and TensorOpsTests.
/// </summary>
[Collection("reference")]
[RequiresBackend("opencl")]
public sealed class OpenClTests(ReferenceFiles refs, OpenClFixture fx, ITestOutputHelper output) : IClassFixture<OpenClFixture>
{
    /// <summary>
    /// Every VGG16 tap (conv1_1 … fc8, the pools and ReLUs) at 32x32 on OpenCL within 1e-4 of the tap's max |value| of
    /// PyTorch's, and of our host backend's.
    /// </summary>
    [Fact]
    public void Vgg16At32MatchesPyTorchAndTheHostBackend()
    {
        var taps = Vgg16Architecture.TapNames.Where(t => t != "flatten" && !t.StartsWith("drop", StringComparison.Ordinal)).ToArray();
        using var file = ReferenceFiles.Open(refs.Random32);
        var input = file.ReadFloat32("input");
        var shape = file.Info("input").Shape;
        int n = (int)shape[0], h = (int)shape[2], w = (int)shape[3];
        var weights = WeightsLocator.Load(refs.Weights);

        Dictionary<string, float[]> ours, host;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using (var device = fx.OpenDevice())
        using (var model = new ImageModel(device, weights))
        {
            ours = model.Forward(input, n, h, w, taps);
            // The versions the graph ran are the ones users get on this device: the tiled implicit GEMM.
            Assert.Equal(Conv2dVersion.V4ImplicitGemm128, device.Kernels(a => new Conv2dGpu(a)).DefaultVersion);
        }
        output.WriteLine($"{fx.Accelerator.Name}: VGG16 forward N={n} {h}x{w} in {sw.Elapsed.TotalSeconds:F1} s (kernels compiled on first use included)");
        using (var device = new HostDevice())
        using (var model = new ImageModel(device, weights))
            host = model.Forward(input, n, h, w, taps);

        var failures = new List<string>();
        foreach (var tap in taps)
            foreach (var (against, want) in new[] { ("torch", file.ReadFloat32("tap/" + tap)), ("host", host[tap]) })
            {
                var error = TapComparison.Compare(tap, ours[tap], want);
                output.WriteLine($"  vs {against,-5} {error}");
                if (!error.Passed) failures.Add($"vs {against}: {error}");
            }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// The tiled backward-weight kernel adds split reductions with ILGPU's atomics: on PoCL it does not build and says
    /// why (PoCL's own error); on a device with the generic address space it runs and matches the host twin.
    /// </summary>
    [Fact]
    public void AtomicKernelIsRefusedWithTheCompilersReasonOrRuns()
    {
        var s = ConvShape.Square(2, 3, 9, 9, 5, 3, 1, 1);
        var r = KernelSelfTest.ConvBackwardWeightCase(fx.Accelerator, fx.Conv, Conv2dBackwardVersion.V2Tiled, "atomics", s, hasBias: true, seed: 3, timed: false);
        if (OpenCl.UsesGlobalPointers(fx.Accelerator.Device))
        {
            Assert.True(r.Skipped, r.ToString());
            Assert.Contains("Conv2dGpu.BackwardWeightTiledKernel does not build", r.NotBuilt);
            Assert.Contains("atomic_uint", r.NotBuilt);
            Assert.Contains(OpenCl.PoclOptIn, r.NotBuilt);
            using var dw = fx.Accelerator.Allocate1D<float>(s.WeightLength);
            using var dy = fx.Accelerator.Allocate1D<float>(s.OutputLength);
            using var x = fx.Accelerator.Allocate1D<float>(s.InputLength);
            var e = Assert.Throws<KernelNotBuiltException>(() => fx.Conv.BackwardWeight(Conv2dBackwardVersion.V2Tiled,
                dw.View, ArrayView<float>.Empty, dy.View, x.View, s, hasBias: false));
            Assert.Equal(r.NotBuilt, e.Message);
        }
        else Assert.True(r.Passed, r.ToString());
    }

    /// <summary>
    /// The adaptation's safety: a view that may point to shared memory is a generic pointer that ILGPU casts from a
    /// local one, which OpenCL C forbids once generic means global, so such a kernel fails to build on PoCL instead of
    /// running wrong; with a real generic address space it runs.
    /// </summary>
    [Fact]
    public void AViewThatMayPointToSharedMemoryDoesNotBuildUnderTheAdaptation()
    {
        if (OpenCl.UsesGlobalPointers(fx.Accelerator.Device))
        {
            Assert.Throws<CLException>(() => fx.Accelerator.LoadStreamKernel<ArrayView<float>, int>(SharedOrGlobal));
            return;
        }
        var kernel = fx.Accelerator.LoadStreamKernel<ArrayView<float>, int>(SharedOrGlobal);
        using var y = fx.Accelerator.Allocate1D<float>(64);
        kernel(new KernelConfig(1, 64), y.View, 1);
        fx.Accelerator.Synchronize();
        Assert.Equal(Enumerable.Range(0, 64).Select(i => (float)((i + 1) % 64 + 1)), y.GetAsArray1D());
    }

    static void SharedOrGlobal(ArrayView<float> y, int useShared)
    {
        var shared = SharedMemory.Allocate<float>(64);
        shared[Group.IdxX] = Group.IdxX;
        Group.Barrier();
        ArrayView<float> source = useShared != 0 ? shared : y;
        y[Group.IdxX] = source[(Group.IdxX + 1) % 64] + 1;
    }

    /// <summary>
    /// `tp7 devices` reports PoCL refused, naming the opt-in, unless the opt-in is set; then usable, saying how it runs.
    /// `tp7 selftest --device opencl` follows the same rule and, opted in, passes every case it builds.
    /// </summary>
    [Fact]
    public void DevicesAndSelfTestReportPoclWithAndWithoutTheOptIn()
    {
        using var tmp = new ScratchDir("tp7-opencl-devices");
        JsonElement OpenClEntry(Dictionary<string, string?> env)
        {
            using var doc = JsonDocument.Parse(CliRunner.RunOk(tmp.Path, ["devices", "--json"], environment: env).Stdout);
            return doc.RootElement.EnumerateArray().First(d => d.GetProperty("device").GetString() == "opencl").Clone();
        }
        var off = OpenClEntry(new() { [OpenCl.PoclOptIn] = null });
        var on = OpenClEntry(new() { [OpenCl.PoclOptIn] = "1" });
        output.WriteLine($"without {OpenCl.PoclOptIn}: {off}\nwith it: {on}");
        Assert.True(on.GetProperty("usable").GetBoolean(), on.ToString());
        if (!Backends.OpenClUsesGlobalPointers)
        {
            Assert.True(off.GetProperty("usable").GetBoolean(), off.ToString());
            return;
        }
        Assert.False(off.GetProperty("usable").GetBoolean());
        Assert.Equal($"no generic address space support, which ILGPU requires (PoCL: {OpenCl.PoclOptIn}=1 compiles ILGPU's generic pointers as global ones, kernels with atomics excepted)",
            off.GetProperty("refused_because").GetString());
        Assert.Contains("generic pointers compiled as global", on.GetProperty("capability").GetString());

        var refused = CliRunner.Run(tmp.Path, ["selftest", "--device", "opencl"], environment: new Dictionary<string, string?> { [OpenCl.PoclOptIn] = null });
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("no usable OpenCL device with index 0 (see 'tp7 devices')", refused.Stderr);

        var r = CliRunner.RunOk(tmp.Path, ["selftest", "--device", "opencl"], environment: new Dictionary<string, string?> { [OpenCl.PoclOptIn] = "1" });
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^selftest on .*: [1-9][0-9]+ passed, 0 failed, [1-9][0-9]* skipped \(the SKIP lines say why\)$", lines[^1].TrimEnd());
        // Only ILGPU's atomics are allowed not to build (today the tiled backward-weight kernel, once per conv shape).
        var skipped = lines.Where(l => l.StartsWith("SKIP", StringComparison.Ordinal)).ToList();
        Assert.Contains(skipped, l => l.StartsWith("SKIP conv2d_backward_weight V2Tiled", StringComparison.Ordinal));
        // Not built (ILGPU's atomics on PoCL) or not available here (the tensor-core versions need CUDA): nothing else.
        Assert.All(skipped, l => Assert.True(l.Contains("atomic_uint") || l.Contains("compute capability 8.0"), l));
        Assert.DoesNotContain(lines, l => l.StartsWith("FAIL", StringComparison.Ordinal));
    }
}
