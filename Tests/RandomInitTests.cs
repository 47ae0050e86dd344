using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// <see cref="TorchGenerator"/> against torch's own stream, op by op: sizes on each side of normal_'s 16-element
/// blocks (1 and 15 take the cached double Box-Muller, 17 and 33 redraw a tail), uniform_ bounds whose
/// multiply-add rounds differently fused, and one generator for all ops, so a miscount of the draws in one op
/// shows in the next. Both of torch's CPU builds: the AVX2 one (what RandomInit and convert_weights.py use) and
/// ATEN_CPU_CAPABILITY=default.
/// </summary>
public sealed class TorchGeneratorTests
{
    const string Ops = "uniform:1:-0.3:0.7,uniform:15:0.1:2.9,normal:1:0.5:2,normal:15:0:1,normal:1:-1:0.25,"
                       + "normal:16:0:0.01,normal:17:0.5:2,uniform:16:-0.19245:0.19245,uniform:17:-1:1,"
                       + "normal:1000:0:0.0625,uniform:1000:0.1:2.9,normal:33:1:3,normal:4096:0:0.01";

    [Theory]
    [InlineData(TorchCpuKernels.Avx2, "avx2", 0)]
    [InlineData(TorchCpuKernels.Avx2, "avx2", 7)]
    [InlineData(TorchCpuKernels.Default, "default", 7)]
    public void EveryOpMatchesTorchBitForBit(TorchCpuKernels kernels, string capability, int seed)
    {
        string hash = RepoPaths.ScriptsHash("torch_random_reference.py", "tp7_safetensors.py");
        string path = Path.Combine(RepoPaths.Cache, $"torch-random-{capability}-seed{seed}-{hash}.safetensors");
        Python.Cached(path, "torch_random_reference.py", "--seed", $"{seed}", "--cpu-capability", capability, "--ops", Ops, "--out", path);
        using var reference = SafeTensorsFile.Open(path);
        Assert.Equal(Ops, reference.Metadata["ops"]);
        Assert.Equal(kernels == TorchCpuKernels.Avx2 ? "AVX2" : "NO", reference.Metadata["cpu_capability"]);

        var generator = new TorchGenerator((ulong)seed, kernels);
        var ops = Ops.Split(',');
        for (int i = 0; i < ops.Length; i++)
        {
            var p = ops[i].Split(':');
            var ours = new float[int.Parse(p[1])];
            double a = double.Parse(p[2], System.Globalization.CultureInfo.InvariantCulture);
            double b = double.Parse(p[3], System.Globalization.CultureInfo.InvariantCulture);
            if (p[0] == "uniform") generator.Uniform(ours, a, b);
            else generator.Normal(ours, a, b);
            AssertBitEqual($"op {i} ({ops[i]}, {capability}, seed {seed})", reference.ReadFloat32($"op{i}"), ours);
        }
    }

    [Fact]
    public void SkipDropsExactlyTheWordsItSays()
    {
        var drawn = new TorchGenerator(3);
        for (int i = 0; i < 1000; i++) drawn.Random();
        var skipped = new TorchGenerator(3);
        skipped.Skip(1);
        skipped.Skip(623);   // to the end of the first twist
        skipped.Skip(376);
        for (int i = 0; i < 700; i++) Assert.Equal(drawn.Random(), skipped.Random());
    }

    [Fact]
    public void FirstWordsAreStdMt19937s()
    {
        // std::mt19937 with the default seed 5489: its 10000th output is 4123659995 (C++11 [rand.predef]).
        var g = new TorchGenerator(5489);
        g.Skip(9999);
        Assert.Equal(4123659995u, g.Random());
    }

    internal static void AssertBitEqual(string what, float[] expected, float[] actual)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, torch has {expected.Length}");
        for (int j = 0; j < expected.Length; j++)
            if (BitConverter.SingleToInt32Bits(expected[j]) != BitConverter.SingleToInt32Bits(actual[j]))
                Assert.Fail($"{what}: first difference at [{j}]: ours {actual[j]:R} (0x{BitConverter.SingleToInt32Bits(actual[j]):x8}), "
                            + $"torch {expected[j]:R} (0x{BitConverter.SingleToInt32Bits(expected[j]):x8})");
    }
}

/// <summary>
/// <see cref="Vgg16Weights.RandomInit"/> is the file <c>tools/convert_weights.py --random-init --seed 0</c> writes,
/// every tensor bit for bit (the in-memory fallback of `tp7 run` and the script's file must be the same weights).
/// </summary>
public sealed class RandomInitTests
{
    [Fact]
    public void RandomInitIsTheScriptsFileBitForBit()
    {
        string hash = RepoPaths.ScriptsHash("convert_weights.py", "tp7_safetensors.py");
        string path = Path.Combine(RepoPaths.Cache, $"vgg16-random-seed0-{hash}.safetensors");
        Python.Cached(path, "convert_weights.py", "--random-init", "--seed", "0", "--out", path);
        using var file = SafeTensorsFile.Open(path);
        Assert.StartsWith("normal_fill_16_AVX2", file.Metadata["normal_kernel"]);

        var ours = Vgg16Weights.RandomInit(0);
        Assert.Contains("seed(0)", ours.Source);
        Assert.Equal(Vgg16Architecture.ParameterSpecs.Select(p => p.Key), file.Tensors.Select(t => t.Key));
        foreach (var (key, _) in Vgg16Architecture.ParameterSpecs)
            TorchGeneratorTests.AssertBitEqual(key, file.ReadFloat32(key), ours[key]);
    }
}
