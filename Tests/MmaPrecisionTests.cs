using FsCheck;
using FsCheck.Xunit;
using Tp7.Engine.IO;
using Tp7.Engine.Kernels;
using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The host side of the tensor-core versions, which is all that runs without a CUDA GPU of compute capability 8.0:
/// the rounding functions (the specification of what the GPU feeds its tensor cores) against PyTorch and an exact
/// TF32 rule, the host twins against the V1 specifications on pre-rounded inputs, the mma kernels' PTX, and the
/// refusal of the mma versions on accelerators that cannot run them.
/// </summary>
public sealed class MmaPrecisionTests
{
    static readonly Lazy<string> Fixture = new(() =>
    {
        string path = Path.Combine(RepoPaths.Cache, $"rounding-{RepoPaths.ScriptsHash("rounding_reference.py", "tp7_safetensors.py")}.safetensors");
        return Python.Cached(path, "rounding_reference.py", "--out", path);
    });

    /// <summary>
    /// Every value of tools/rounding_reference.py (specials, ties and near-ties of each format in the normal and
    /// subnormal ranges, 200,000 random bit patterns): bf16 and fp16 bit-identical to torch's conversion, tf32
    /// bit-identical to round-to-nearest-ties-away on exact rationals; NaN in, NaN out.
    /// </summary>
    [Fact]
    public void RoundingMatchesTorchAndTheExactTf32Rule()
    {
        using var file = SafeTensorsFile.Open(Fixture.Value);
        Assert.Equal("1", file.Metadata["format_version"]);
        var input = file.ReadInt64("input_bits");
        var bf16 = file.ReadInt64("bf16_bits");
        var fp16 = file.ReadInt64("fp16_bits");
        var tf32 = file.ReadInt64("tf32_bits");
        Assert.True(input.Length > 200000, $"{input.Length} values");
        int nans = 0, ties = 0;
        for (int i = 0; i < input.Length; i++)
        {
            float x = BitConverter.UInt32BitsToSingle((uint)input[i]);
            if (float.IsNaN(x))
            {
                nans++;
                Assert.True(float.IsNaN(Precisions.RoundBf16(x)) && float.IsNaN(Precisions.RoundFp16(x)) && float.IsNaN(Precisions.RoundTf32(x)),
                    $"NaN 0x{input[i]:X8} must stay NaN");
                continue;
            }
            if ((input[i] & 0x1FFF) == 0x1000 || (input[i] & 0xFFFF) == 0x8000) ties++;
            Expect("bf16", input[i], (ushort)bf16[i], Precisions.Bf16Bits(x));
            Expect("fp16", input[i], (ushort)fp16[i], Precisions.Fp16Bits(x));
            Expect("tf32", input[i], (uint)tf32[i], BitConverter.SingleToUInt32Bits(Precisions.RoundTf32(x)));
            // The float-valued roundings are the bit patterns widened.
            Assert.Equal(BitConverter.UInt32BitsToSingle((uint)bf16[i] << 16), Precisions.RoundBf16(x));
            Assert.Equal((float)BitConverter.UInt16BitsToHalf((ushort)fp16[i]), Precisions.RoundFp16(x));
        }
        Assert.True(nans >= 4 && ties >= 4000, $"fixture lacks specials: {nans} NaNs, {ties} ties");
    }

    static void Expect(string format, long input, uint expected, uint actual)
    {
        if (expected != actual)
            Assert.Fail($"{format}: input 0x{input:X8} ({BitConverter.UInt32BitsToSingle((uint)input):R}): expected 0x{expected:X}, ours 0x{actual:X}");
    }

    /// <summary>Hand-checkable anchors of each rule (the fixture covers the rest): ties, overflow, subnormals.</summary>
    [Theory]
    [InlineData(0x3F801000u, 0x3F802000u)] // 1 + 2^-11: a tie, away from zero
    [InlineData(0xBF801000u, 0xBF802000u)] // its negative: away from zero too
    [InlineData(0x3F800FFFu, 0x3F800000u)] // just below the tie: down
    [InlineData(0x7F7FF000u, 0x7F800000u)] // the tie above the largest TF32 value: inf
    [InlineData(0x00001000u, 0x00002000u)] // a subnormal tie
    public void Tf32RoundsToNearestTiesAway(uint input, uint expected)
        => Assert.Equal(expected, BitConverter.SingleToUInt32Bits(Precisions.RoundTf32(BitConverter.UInt32BitsToSingle(input))));

    [Theory]
    [InlineData(65504f, 65504f)]
    [InlineData(65519.99f, 65504f)]
    [InlineData(65520f, float.PositiveInfinity)]  // the tie above 65504 (odd mantissa) goes to the even 2^16: inf
    [InlineData(-65520f, float.NegativeInfinity)]
    [InlineData(2.9802322e-08f, 0f)]               // exactly 2^-25, half the smallest subnormal: a tie to even 0
    [InlineData(2.9802326e-08f, 5.9604645e-08f)]   // just above: the smallest subnormal
    [InlineData(2049f, 2048f)]                     // a tie at the 2048 binade (spacing 2): to even
    [InlineData(2051f, 2052f)]
    public void Fp16RoundsToNearestEven(float input, float expected) => Assert.Equal(expected, Precisions.RoundFp16(input));

    // ===== Host twins =====

    static float[] Random(int seed, long n, float scale = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (rng.NextSingle() * 2f - 1f) * scale;
        return a;
    }

    static readonly Precision[] Reduced = [Precision.Tf32, Precision.Fp16, Precision.Bf16];

    /// <summary>
    /// Gemm.HostRounded = the triple-loop specification on inputs rounded element by element, on odd shapes with every
    /// transpose, padding, alpha and beta; and it is not the fp32 GEMM (the rounding happened): inputs uniform in [-1, 1]
    /// move each product by up to ~2u, so the sum of K terms moves by far more than fp32 reordering does.
    /// </summary>
    [Property(MaxTest = 40)]
    public void GemmHostRoundedIsTheFp32GemmOfRoundedInputs(PositiveInt m, PositiveInt n, PositiveInt k, bool ta, bool tb,
        NonNegativeInt pad, NonNegativeInt which, int seed)
    {
        var p = Reduced[which.Get % 3];
        int M = 1 + m.Get % 40, N = 1 + n.Get % 50, K = 8 + k.Get % 90, pd = pad.Get % 3;
        var s = new GemmShape(M, N, K, ta, tb, Lda: pd == 0 ? 0 : (ta ? M : K) + pd, Ldb: pd == 0 ? 0 : (tb ? K : N) + pd,
            Ldc: pd == 0 ? 0 : N + pd, Alpha: pd == 2 ? -0.5f : 1f, Beta: pd == 1 ? 0.75f : 0f);
        var a = Random(seed, s.TransA ? (long)(K - 1) * s.LdaOrDefault + M : (long)(M - 1) * s.LdaOrDefault + K);
        var b = Random(seed + 1, s.TransB ? (long)(N - 1) * s.LdbOrDefault + K : (long)(K - 1) * s.LdbOrDefault + N);
        var c0 = Random(seed + 2, (long)(M - 1) * s.LdcOrDefault + N);
        var got = (float[])c0.Clone();
        Gemm.HostRounded(p, got, a, b, s);
        var spec = (float[])c0.Clone();
        Gemm.Host_V1Naive(spec, p.Rounded(a), p.Rounded(b), s);
        var tol = new Tolerance(1e-5 * (1 + Math.Sqrt(K)), 1e-5);
        var cmp = Comparison.Of(got, spec, tol);
        Assert.True(cmp.Passed, $"{p} {s}: {cmp}");
    }

    /// <summary>The host twins do round: 1 + 2^-9 + 2^-12 times 1 + 2^-13 is 1 + 2^-9 in tf32 and fp16 (both keep 10
    /// mantissa bits) and 1 in bf16 (7 bits, 2^-9 below half its spacing), whatever the fp32 GEMM makes of it.</summary>
    [Theory]
    [InlineData(Precision.Tf32, 1f + 1f / 512)]
    [InlineData(Precision.Fp16, 1f + 1f / 512)]
    [InlineData(Precision.Bf16, 1f)]
    [InlineData(Precision.Fp32, (float)((1.0 + 1.0 / 512 + 1.0 / 4096) * (1.0 + 1.0 / 8192)))]
    public void HostTwinsRoundTheirInputs(Precision p, float expected)
    {
        float a = 1f + 1f / 512 + 1f / 4096, b = 1f + 1f / 8192;
        var c = new float[1];
        Gemm.HostRounded(p, c, [a], [b], new GemmShape(1, 1, 1));
        Assert.Equal(expected, c[0]);
        var y = new float[1];
        Conv2d.ForwardHostRounded(p, y, [a], [b], [0f], ConvShape.Square(1, 1, 1, 1, 1, 1), relu: false);
        Assert.Equal(expected, y[0]);
    }

    /// <summary>Conv2d.ForwardHostRounded = the direct-loop specification on rounded x and w (bias unrounded), odd shapes.</summary>
    [Property(MaxTest = 30)]
    public void ConvHostRoundedIsTheFp32ConvOfRoundedInputs(PositiveInt c, PositiveInt k, PositiveInt hw, NonNegativeInt kind, bool relu, int seed)
    {
        var p = Reduced[kind.Get % 3];
        int C = 1 + c.Get % 9, K = 1 + k.Get % 20, H = 3 + hw.Get % 9, W = 4 + hw.Get % 7, R = 1 + 2 * (kind.Get / 3 % 2);
        var s = new ConvShape(1 + kind.Get / 6 % 2, C, H, W, K, R, R, 1 + kind.Get / 12 % 2, 1, R / 2, R / 2);
        var x = Random(seed, s.InputLength);
        var w = Random(seed + 1, s.WeightLength, 0.5f);
        var bias = Random(seed + 2, s.K, 0.3f);
        var got = new float[s.OutputLength];
        Conv2d.ForwardHostRounded(p, got, x, w, bias, s, relu);
        var spec = new float[s.OutputLength];
        Conv2d.ForwardHost_V1Naive(spec, p.Rounded(x), p.Rounded(w), bias, s, relu);
        int fanIn = C * R * R;
        var cmp = Comparison.Of(got, spec, new Tolerance(1e-5 * (1 + Math.Sqrt(fanIn)), 1e-5));
        Assert.True(cmp.Passed, $"{p} {s}: {cmp}");
    }

    // ===== Kernels (no GPU here: their PTX, and their refusal elsewhere) =====

    /// <summary>
    /// Each mma kernel's PTX holds exactly its 16 mma.sync of the right shape and types (the warp's 4 x 4 tiles, the
    /// tile switch folded to constants), no other format's, and keeps its accumulators out of local memory in the loop
    /// (ILGPU routes inline-PTX outputs through local slots: only the epilogue's reads of the accumulators may use them).
    /// </summary>
    [Fact]
    public void MmaKernelsCompileToPtxWithSixteenMmaEach()
    {
        var ptx = KernelPtx.CompileAll(ILGPU.Runtime.Cuda.CudaArchitecture.SM_90, ILGPU.Runtime.Cuda.CudaInstructionSet.ISA_80);
        var expected = new Dictionary<string, string>
        {
            ["GemmMmaGpu.Tf32Kernel"] = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
            ["GemmMmaGpu.F16Kernel"] = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
            ["GemmMmaGpu.Bf16Kernel"] = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
            ["Conv2dMmaGpu.Tf32Kernel"] = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
            ["Conv2dMmaGpu.F16Kernel"] = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
            ["Conv2dMmaGpu.Bf16Kernel"] = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
        };
        foreach (var (name, op) in expected)
        {
            var code = ptx.Single(k => k.Kernel == name).Ptx;
            int all = CountOf(code, "mma.sync"), mine = CountOf(code, op + " ");
            Assert.True(all == 16 && mine == 16, $"{name}: {mine} of {op}, {all} mma.sync in all");
            Assert.Contains(".reg .f32 tcacc<64>;", code);
            // The emulation branch (CudaAsm.IsSupported false) stays in ILGPU's PTX behind a constant predicate; ptxas
            // removes it (no SHFL, no LDL in the SASS: docs/benchmarks.md), which needs ptxas, not available here.
            Assert.Matches(@"setp\.ne\.s32\s+%p\d+, 1, 1;", code);
            Assert.Contains("bar.sync", code);
        }
        if (!expected.Keys.All(ptx.Select(k => k.Kernel).Contains)) Assert.Fail("KernelPtx.AllKernels() lacks an mma kernel");
    }

    static int CountOf(string text, string what)
    {
        int n = 0;
        for (int i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>
    /// The mma kernels' own code on ILGPU's CPU accelerator with each mma.sync emulated from the documented fragment
    /// layouts (<see cref="KernelSelfTest.MmaEmulationGemmCase"/>): odd sizes with edge tiles in every dimension,
    /// every transpose, padded leading dimensions, alpha/beta, bias and ReLU, more than one reduction slice. The layout
    /// and epilogue cases that do not depend on the format run for tf32 only: the CPU accelerator runs each lane as an
    /// OS thread and each shuffle as a barrier, minutes per launch on a loaded machine.
    /// </summary>
    [Theory]
    [InlineData(GemmVersion.V4MmaTf32)]
    [InlineData(GemmVersion.V4MmaF16)]
    [InlineData(GemmVersion.V4MmaBf16)]
    public void MmaGemmDataFlowMatchesTheHostTwinUnderEmulation(GemmVersion v)
    {
        using var context = Accelerators.CreateCpuSimulatorContext();
        using var acc = context.GetPreferredDevice(preferCPU: true).CreateAccelerator(context);
        var cases = new (GemmShape S, bool Bias, bool Relu)[]
        {
            (new GemmShape(130, 19, 70), false, false),                                        // 2 row tiles, K over 1-3 slices
            (new GemmShape(7, 133, 45, TransA: true, TransB: true), true, true),               // 2 column tiles, both transposed
            (new GemmShape(33, 66, 19, false, true, Lda: 21, Ldb: 23, Ldc: 70, Alpha: 0.5f, Beta: -1.5f), false, false),
            (new GemmShape(20, 9, 130, true, false, Lda: 25, Ldb: 11, Ldc: 9, Alpha: -2f, Beta: 1f), true, false),
        };
        int seed = 40;
        foreach (var (s, bias, relu) in v == GemmVersion.V4MmaTf32 ? cases : cases[..2])
        {
            var r = KernelSelfTest.MmaEmulationGemmCase(acc, v, s, seed++, bias, relu);
            Assert.True(r.Passed, r.ToString());
        }
    }

    /// <summary>The implicit-GEMM convolution under the same emulation: padding, stride, 1x1, K over one tile, several slices.</summary>
    [Theory]
    [InlineData(Conv2dVersion.V4MmaTf32)]
    [InlineData(Conv2dVersion.V4MmaF16)]
    [InlineData(Conv2dVersion.V4MmaBf16)]
    public void MmaConvDataFlowMatchesTheHostTwinUnderEmulation(Conv2dVersion v)
    {
        using var context = Accelerators.CreateCpuSimulatorContext();
        using var acc = context.GetPreferredDevice(preferCPU: true).CreateAccelerator(context);
        var cases = new (string Name, ConvShape S, bool Relu)[]
        {
            ("3x3 pad 1, C*R*S 45", ConvShape.Square(2, 5, 9, 7, 6, 3, 1, 1), true),
            ("K 130 stride 2", ConvShape.Square(1, 3, 11, 11, 130, 3, 2, 1), false),
            ("2x3 stride 2x1 pad 0x2", new ConvShape(1, 2, 9, 10, 4, 2, 3, 2, 1, 0, 2), false),
            ("1x1, C 70", ConvShape.Square(1, 70, 4, 5, 9, 1), true),
        };
        int seed = 60;
        foreach (var (name, s, relu) in v == Conv2dVersion.V4MmaTf32 ? cases : cases[..1])
        {
            var r = KernelSelfTest.MmaEmulationConvCase(acc, v, name, s, relu, seed++);
            Assert.True(r.Passed, r.ToString());
        }
    }

    /// <summary>On the CPU accelerator the mma versions are not loaded; asking for one fails with the reason.</summary>
    [Fact]
    public void MmaVersionsAreRefusedOffCuda()
    {
        using var context = Accelerators.CreateCpuSimulatorContext();
        using var acc = context.GetPreferredDevice(preferCPU: true).CreateAccelerator(context);
        Assert.False(Precisions.HasTensorCores(acc));
        using var gemm = new GemmGpu(acc);
        Assert.False(gemm.HasMma);
        using var c = acc.Allocate1D<float>(12);
        using var a = acc.Allocate1D<float>(15);
        using var b = acc.Allocate1D<float>(20);
        var e = Assert.Throws<NotSupportedException>(() => gemm.Run(GemmVersion.V4MmaTf32, c.View, a.View, b.View, new GemmShape(3, 4, 5)));
        Assert.Contains("compute capability 8.0", e.Message);
        var conv = new Conv2dGpu(acc);
        Assert.False(conv.HasMma);
        var s = ConvShape.Square(1, 2, 5, 5, 3, 3, 1, 1);
        using var y = acc.Allocate1D<float>(s.OutputLength);
        using var x = acc.Allocate1D<float>(s.InputLength);
        using var w = acc.Allocate1D<float>(s.WeightLength);
        using var bias = acc.Allocate1D<float>(s.K);
        e = Assert.Throws<NotSupportedException>(() => conv.Forward(Conv2dVersion.V4MmaBf16, y.View, x.View, w.View, bias.View, s, false));
        Assert.Contains("compute capability 8.0", e.Message);
        Assert.Equal("the host backend computes in fp32", Precisions.WhyNot(Precision.Fp16, null));
        Assert.Null(Precisions.WhyNot(Precision.Fp32, acc));
    }
}
