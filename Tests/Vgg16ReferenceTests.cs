using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// Every named VGG16 tap against PyTorch's with the same random-init weights: real photos at 224x224 on the host
/// backend, and a seeded random batch at 32x32 on ILGPU's CPU accelerator. Goal: max |ours - torch| at most 1e-4 of
/// the tap's max |value|, in fp32.
/// </summary>
[Collection("reference")]
public sealed class Vgg16ReferenceTests(ReferenceFiles refs, ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    static readonly string[] Taps = Vgg16Architecture.TapNames.Where(t => t != "flatten" && !t.StartsWith("drop")).ToArray();

    [Fact]
    public void HostBackendMatchesPyTorchOnPhotosAt224()
    {
        using var device = new HostDevice();
        CompareAllTaps(device, refs.Photos224);
    }

    /// <summary>
    /// ILGPU's default 16-thread groups: the naive kernel versions run the whole network (the tiled versions are
    /// checked against the host twins on odd shapes by GpuOpsTests, and on real layer shapes by `tp7 selftest --full`).
    /// </summary>
    [Fact]
    public void IlgpuCpuAcceleratorMatchesPyTorchOnRandomBatchAt32()
    {
        using var device = IlgpuDevice.OpenCpuAccelerator();
        CompareAllTaps(device, refs.Random32);
    }

    /// <summary>
    /// The convolutional part of VGG16 (conv1_1 .. pool5: all 13 convolutions) through the kernel versions a GPU runs
    /// by default, the 128 x 128 tiled implicit GEMM among them, on the CPU simulator with 256-thread groups. The
    /// classifier stays out: fc6's GEMM (25088 x 4096) takes minutes there and is checked on odd shapes elsewhere.
    /// </summary>
    [Fact]
    public void IlgpuTiledKernelsMatchPyTorchOnTheConvolutionsAt32()
    {
        using var device = IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true);
        Assert.Equal(Tp7.Engine.Kernels.Conv2dVersion.V4ImplicitGemm128, device.Kernels(a => new Tp7.Engine.Kernels.Conv2dGpu(a)).DefaultVersion);
        var convTaps = Taps.TakeWhile(t => t != "avgpool").ToArray();
        Assert.Equal(13, convTaps.Count(t => t.StartsWith("conv", StringComparison.Ordinal)));
        Assert.Equal("pool5", convTaps[^1]);
        CompareAllTaps(device, refs.Random32, convTaps);
    }

    [Fact]
    public void HostBackendMatchesPyTorchOnRandomBatchAt32()
    {
        using var device = new HostDevice();
        CompareAllTaps(device, refs.Random32);
    }

    void CompareAllTaps(ComputeDevice device, string referencePath, string[]? taps = null)
    {
        taps ??= Taps;
        using var file = ReferenceFiles.Open(referencePath);
        var input = file.ReadFloat32("input");
        var shape = file.Info("input").Shape;
        int n = (int)shape[0], h = (int)shape[2], w = (int)shape[3];
        using var model = new ImageModel(device, WeightsLocator.Load(refs.Weights));
        var ours = model.Forward(input, n, h, w, taps);

        output.WriteLine($"{device.Name}, N={n}, {h}x{w}: max |diff| / max |torch| per tap");
        var errors = TapComparison.CompareAll(file, ours, "fp32");
        Assert.Equal(taps.Length, errors.Count);
        foreach (var e in errors) output.WriteLine("  " + e);
        var failures = errors.Where(e => !e.Passed).Select(e => e.ToString()).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>The lab's classification: our preprocessing + forward + softmax against PyTorch's logits on the photos.</summary>
    [Fact]
    public void ClassifyGivesPyTorchsTop5AndProbabilities()
    {
        using var file = ReferenceFiles.Open(refs.Photos224);
        var torchLogits = file.ReadFloat32("logits");
        var p = Preprocessing.ImageNet;
        var input = new float[refs.Photos.Length * p.TensorLength];
        for (int i = 0; i < refs.Photos.Length; i++)
            ImageLoader.LoadTensor(refs.Photos[i], p, input.AsSpan(i * p.TensorLength, p.TensorLength));
        using var device = new HostDevice();
        using var model = new ImageModel(device, WeightsLocator.Load(refs.Weights));
        var ours = model.Softmax(model.Forward(input, refs.Photos.Length, p.Size, p.Size, ["fc8"])["fc8"], refs.Photos.Length);
        var theirs = new float[torchLogits.Length];
        Tp7.Engine.Kernels.Activations.SoftmaxHost(theirs, torchLogits, refs.Photos.Length, 1000);
        for (int i = 0; i < refs.Photos.Length; i++)
        {
            var a = ours.AsSpan(i * 1000, 1000).ToArray();
            var b = theirs.AsSpan(i * 1000, 1000).ToArray();
            var topOurs = Enumerable.Range(0, 1000).OrderByDescending(j => a[j]).Take(5).ToArray();
            var topTheirs = Enumerable.Range(0, 1000).OrderByDescending(j => b[j]).Take(5).ToArray();
            output.WriteLine($"{Path.GetFileName(refs.Photos[i])}: ours {string.Join(", ", topOurs.Select(j => $"{j}:{a[j]:F5}"))}");
            output.WriteLine($"{Path.GetFileName(refs.Photos[i])}: torch {string.Join(", ", topTheirs.Select(j => $"{j}:{b[j]:F5}"))}");
            Assert.Equal(topTheirs, topOurs);
            foreach (var j in topTheirs) Assert.InRange(Math.Abs(a[j] - b[j]), 0, 1e-4);
        }
    }
}
