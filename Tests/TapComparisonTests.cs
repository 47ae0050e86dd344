using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The per-tap measure that `tp7 selftest --reference` (the GPU check against PyTorch on the GPU machine) and
/// Vgg16ReferenceTests share: max |ours - torch| / max |torch|, and in a reduced precision a limit of twice PyTorch's own
/// error in that precision.
/// </summary>
public sealed class TapComparisonTests
{
    static float[] Ramp(int n) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(i * 0.37) * 3f).ToArray();

    [Fact]
    public void OneValueOffByTwiceTheToleranceFailsAndIsNamed()
    {
        var want = Ramp(101);
        float max = want.Max(Math.Abs);
        var got = (float[])want.Clone();
        got[57] += (float)(2 * TapComparison.Fp32Tolerance * max);
        var e = TapComparison.Compare("conv3_1", got, want);
        Assert.False(e.Passed);
        Assert.Equal(57, e.WorstIndex);
        Assert.InRange(e.Relative, 1.9e-4, 2.1e-4);
        Assert.Contains("FAILED: at index 57", e.ToString());

        got[57] = want[57] + (float)(0.5 * TapComparison.Fp32Tolerance * max);
        Assert.True(TapComparison.Compare("conv3_1", got, want).Passed);
    }

    [Fact]
    public void NaNFailsWhereverItIs()
    {
        var want = Ramp(10);
        var got = (float[])want.Clone();
        got[3] = float.NaN;
        var e = TapComparison.Compare("fc8", got, want);
        Assert.False(e.Passed);
        Assert.Equal(3, e.WorstIndex);
    }

    [Fact]
    public void ReducedPrecisionIsHeldToTwicePyTorchsOwnError()
    {
        var want = Ramp(64);
        float max = want.Max(Math.Abs);
        var peer = (float[])want.Clone();
        peer[5] += 2e-3f * max;                    // PyTorch in bf16: 2e-3 of max
        var ours = (float[])want.Clone();
        ours[9] += 3.9e-3f * max;                  // within 2 x 2e-3 + 1e-4
        var e = TapComparison.Compare("relu7", ours, want, peer);
        Assert.True(e.Passed, e.ToString());
        Assert.InRange(e.PeerRelative!.Value, 1.99e-3, 2.01e-3);
        ours[9] = want[9] + 4.3e-3f * max;          // beyond it
        Assert.False(TapComparison.Compare("relu7", ours, want, peer).Passed);
    }

    [Fact]
    public void LengthMismatchIsRefusedNamingTheTap()
    {
        var e = Assert.Throws<ArgumentException>(() => TapComparison.Compare("pool5", new float[3], new float[4]));
        Assert.Contains("pool5", e.Message);
    }
}

/// <summary>`tp7 selftest --reference`: the whole network against a make_reference.py file, as the GPU check runs it.</summary>
[Collection("reference")]
public sealed class SelfTestReferenceCliTests(ReferenceFiles refs) : IDisposable
{
    readonly ScratchDir dir = new("tp7-selftest-ref");

    [Fact]
    public void HostBackendPassesEveryTapOfTheRandom32Reference()
    {
        var r = CliRunner.RunOk(dir.Path, ["selftest", "--reference", refs.Random32, "--weights", refs.Weights, "--device", "cpu"]);
        int taps = Vgg16Architecture.TapNames.Count(t => t != "flatten" && !t.StartsWith("drop"));
        Assert.Contains($": {taps} taps passed, 0 failed", r.Stdout);
        Assert.Contains("conv1_1", r.Stdout);
        Assert.Contains("fc8", r.Stdout);
    }

    [Fact]
    public void WeightsOtherThanTheReferencesAreRefusedBeforeAnyWork()
    {
        string other = dir["other.safetensors"];
        File.WriteAllText(other, "not the reference's weights");
        var r = CliRunner.Run(dir.Path, ["selftest", "--reference", refs.Random32, "--weights", other, "--device", "cpu"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"is not the file {refs.Random32} was made with", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void AFileThatIsNotAReferenceIsRefused()
    {
        var r = CliRunner.Run(dir.Path, ["selftest", "--reference", refs.Weights, "--weights", refs.Weights, "--device", "cpu"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("reference format version", r.Stderr);
    }

    public void Dispose() => dir.Dispose();
}
