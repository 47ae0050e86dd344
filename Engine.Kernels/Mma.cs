using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Tp7.Engine.Kernels;

// Tensor-core building blocks shared by the mma versions of GEMM (GemmMma.cs) and convolution (Conv2dMma.cs):
// the precisions, their host rounding (the specification of what the GPU feeds the tensor cores), and the
// inline-PTX pieces (conversion, mma.sync, fragment loads from a swizzled shared tile).

/// <summary>
/// What the matrix products of a forward pass compute in. Tensors stay fp32 in memory and accumulation is fp32 in
/// every precision; tf32, fp16 and bf16 round the two inputs of each product as they enter the tensor cores.
/// </summary>
public enum Precision
{
    /// <summary>Strict IEEE fp32 (the SIMT kernels): the default.</summary>
    Fp32,
    /// <summary>Inputs rounded to TF32 (8-bit exponent, 10-bit mantissa; round to nearest, ties away), mma m16n8k8.</summary>
    Tf32,
    /// <summary>Inputs rounded to IEEE binary16 (round to nearest even, overflow to inf), mma m16n8k16.</summary>
    Fp16,
    /// <summary>Inputs rounded to bfloat16 (8-bit exponent, 7-bit mantissa; round to nearest even), mma m16n8k16.</summary>
    Bf16,
}

/// <summary>Names, host rounding and device support of the precisions.</summary>
public static class Precisions
{
    /// <summary>The option values, in the order of <see cref="Precision"/>.</summary>
    public static readonly string[] Names = ["fp32", "tf32", "fp16", "bf16"];

    public static string Name(this Precision p) => Names[(int)p];

    /// <summary>fp32, tf32, fp16 or bf16 (any case); null for anything else.</summary>
    public static Precision? Parse(string text)
    {
        int i = Array.FindIndex(Names, n => n.Equals(text.Trim(), StringComparison.OrdinalIgnoreCase));
        return i < 0 ? null : (Precision)i;
    }

    /// <summary>Unit roundoff of the input format: half the distance from 1 to the next value (2^-(mantissa bits + 1)).</summary>
    public static double UnitRoundoff(this Precision p) => p switch
    {
        Precision.Fp32 => Math.Pow(2, -24),
        Precision.Tf32 => Math.Pow(2, -11),
        Precision.Fp16 => Math.Pow(2, -11),
        Precision.Bf16 => Math.Pow(2, -8),
        _ => throw new ArgumentOutOfRangeException(nameof(p), p, null),
    };

    /// <summary>
    /// Tolerance of an mma result against its host twin (both inputs rounded by <see cref="Round(Precision, float)"/>,
    /// then fp32 products and sums): products of rounded inputs are exact in fp32, so host and GPU differ only in the
    /// order and rounding of the fp32 sums inside the tensor core, which NVIDIA does not document (truncating adders
    /// have been measured). The bound is stated in the input precision, as for a comparison across implementations:
    /// |Δ| ≤ 4·sqrt(K)·u·max|a|·max|b| + 1e-5·|ref|, u the unit roundoff of <paramref name="p"/> (2^-11 tf32 and fp16,
    /// 2^-8 bf16). A wrong fragment layout or a dropped slice moves results by O(max|a|·max|b|·sqrt(K)), far beyond it.
    /// </summary>
    public static Tolerance MmaTolerance(Precision p, long reduction, double maxAbsA, double maxAbsB)
        => new(4 * Math.Sqrt(Math.Max(1, reduction)) * p.UnitRoundoff() * maxAbsA * maxAbsB, 1e-5);

    // ===== Host rounding: bit-exact twins of the PTX conversions the mma kernels use =====

    /// <summary>cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest with ties away from zero (add half of the
    /// 13 dropped bits, then clear them); a carry may reach the exponent, up to inf. NaN stays NaN, inf stays inf.</summary>
    public static float RoundTf32(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if ((bits & 0x7F800000u) == 0x7F800000u) return x;
        return BitConverter.UInt32BitsToSingle((bits + 0x1000u) & 0xFFFFE000u);
    }

    /// <summary>cvt.rn.bf16x2.f32 for one value: round to nearest even on the 16 dropped bits (overflow to inf,
    /// subnormals kept), widened back to fp32. NaN stays NaN.</summary>
    public static float RoundBf16(float x) => BitConverter.UInt32BitsToSingle((uint)Bf16Bits(x) << 16);

    /// <summary>cvt.rn.f16x2.f32 for one value: IEEE binary16 round to nearest even (overflow to inf, subnormals
    /// down to 2^-24, below half of that to a signed zero), widened back to fp32. NaN stays NaN.</summary>
    public static float RoundFp16(float x) => (float)BitConverter.UInt16BitsToHalf(Fp16Bits(x));

    /// <summary>The bfloat16 bit pattern of <paramref name="x"/> rounded to nearest even (NaN: 0x7FC0 with x's sign).</summary>
    public static ushort Bf16Bits(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((bits >> 16) & 0x8000u | 0x7FC0u);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>The IEEE binary16 bit pattern of <paramref name="x"/>, round to nearest even (NaN: 0x7E00 with x's sign).</summary>
    public static ushort Fp16Bits(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        uint sign = (bits >> 16) & 0x8000u, abs = bits & 0x7FFFFFFFu;
        if (abs > 0x7F800000u) return (ushort)(sign | 0x7E00u);
        // 65520 = 0x477FF000 is halfway between 65504 (odd mantissa) and 2^16: it and everything above round to inf.
        if (abs >= 0x477FF000u) return (ushort)(sign | 0x7C00u);
        if (abs < 0x38800000u)
        {
            // Below 2^-14: a multiple of 2^-24 (a subnormal, or 1024·2^-24 = the smallest normal). Scaling by 2^24 is
            // exact, so one rounding to an integer (ties to even) is the whole conversion.
            float scaled = BitConverter.UInt32BitsToSingle(abs) * 16777216f;
            return (ushort)(sign | (uint)MathF.Round(scaled, MidpointRounding.ToEven));
        }
        uint mantissa = abs & 0x7FFFFFu;
        uint h = ((abs >> 23) - 127 + 15) << 10 | mantissa >> 13;
        uint rest = mantissa & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0)) h++; // a carry into the exponent is the right result
        return (ushort)(sign | h);
    }

    /// <summary>x rounded to the input format of precision <paramref name="p"/> (fp32: unchanged).</summary>
    public static float Round(this Precision p, float x) => p switch
    {
        Precision.Fp32 => x,
        Precision.Tf32 => RoundTf32(x),
        Precision.Fp16 => RoundFp16(x),
        Precision.Bf16 => RoundBf16(x),
        _ => throw new ArgumentOutOfRangeException(nameof(p), p, null),
    };

    /// <summary>A copy of <paramref name="x"/> with every element rounded to precision <paramref name="p"/>.</summary>
    public static float[] Rounded(this Precision p, ReadOnlySpan<float> x)
    {
        var r = new float[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = p.Round(x[i]);
        return r;
    }

    /// <summary>The tensor-core GEMM version of a precision; null for fp32 (the SIMT versions).</summary>
    public static GemmVersion? MmaGemmVersion(this Precision p) => GemmMmaGpu.VersionOf(p);

    /// <summary>The tensor-core convolution version of a precision; null for fp32.</summary>
    public static Conv2dVersion? MmaConvVersion(this Precision p) => Conv2dMmaGpu.VersionOf(p);

    /// <summary>The input precision of a GEMM version (fp32 for the SIMT ones).</summary>
    public static Precision Of(GemmVersion v) => GemmMmaGpu.PrecisionOf(v);

    /// <summary>The input precision of a convolution version (fp32 for the SIMT ones).</summary>
    public static Precision Of(Conv2dVersion v) => Conv2dMmaGpu.PrecisionOf(v);

    // ===== Device support =====

    /// <summary>Tensor-core mma with tf32/bf16 inputs (m16n8k8 tf32, m16n8k16 bf16) needs compute capability 8.0.</summary>
    public static readonly CudaArchitecture MinimumArchitecture = CudaArchitecture.SM_80;

    /// <summary>Whether the mma kernels can run on <paramref name="acc"/>: a CUDA device of compute capability 8.0 or newer.</summary>
    public static bool HasTensorCores(Accelerator acc)
        => acc is CudaAccelerator cuda && cuda.Architecture >= MinimumArchitecture;

    /// <summary>Why precision <paramref name="p"/> cannot run on <paramref name="acc"/>, or null when it can.</summary>
    public static string? WhyNot(Precision p, Accelerator? acc)
    {
        if (p == Precision.Fp32) return null;
        if (acc is CudaAccelerator cuda)
            return HasTensorCores(acc) ? null
                : $"{acc.Name} has compute capability {cuda.Architecture}; {p.Name()} needs 8.0 or newer";
        return acc == null ? "the host backend computes in fp32" : $"{acc.Name} is not a CUDA device";
    }
}

// ===== Inline PTX =====

/// <summary>
/// One input format of the tensor cores: how two fp32 values become one 32-bit fragment word, and the mma.sync that
/// consumes the words. A word holds one tf32 value (the reduction advances 8 per mma) or two 16-bit values of
/// consecutive reduction indices, the lower index in the low half (the reduction advances 16 per mma). In words the
/// fragment layouts of m16n8k8.tf32 and m16n8k16.f16/bf16 coincide (PTX ISA, "Matrix Fragments for mma.m16n8k8"
/// and "... mma.m16n8k16 with floating point type"): A word i of lane (g = lane/4, q = lane%4) is row g + 8·(i%2),
/// word column q + 4·(i/2); B word i is word row q + 4·i, column g; C/D element i is row g + 8·(i/2), column 2q + i%2.
/// So one kernel body serves the three formats.
/// </summary>
/// <remarks>
/// ILGPU 1.5 passes every output of inline PTX through a local-memory slot (the out/Ref argument's address), and ptxas
/// keeps those stores: measured with ptx_report, an mma whose accumulators were Ref arguments cost a 656-byte stack
/// frame and LDL/STL around each mma. So the accumulators live in PTX registers the kernel declares itself
/// (<see cref="MmaAccumulators"/>), the mma takes only inputs, and the conversions are written in C#: the tf32 and
/// bf16 rounding as the same bit operations as the host twins (what cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32 compute),
/// fp16 through ILGPU's Half conversion, which is PTX's cvt.rn.f16.f32.
/// </remarks>
internal interface IMmaFormat
{
    /// <summary>Reduction elements per 32-bit word: 1 (tf32) or 2 (fp16, bf16).</summary>
    int ElementsPerWord { get; }
    /// <summary>The word holding <paramref name="lo"/> (reduction index k) and, in the 16-bit formats, <paramref name="hi"/> (k + 1).</summary>
    uint Pack(float lo, float hi);
    /// <summary>D = A·B + C on 16 x 8 tile <paramref name="tile"/> (a constant 0..15) of the warp's accumulators.</summary>
    void Mma(int tile, MmaA a, MmaB b);
    /// <summary>The value at reduction index k of a word (widened to fp32): what the tensor core reads. Emulation only.</summary>
    float Lo(uint word);
    /// <summary>The value at k + 1 of a word (0 for tf32). Emulation only.</summary>
    float Hi(uint word);
}

/// <summary>The four A-fragment words one lane holds of a 16 x 8-word tile.</summary>
internal struct MmaA { public uint A0, A1, A2, A3; }

/// <summary>The two B-fragment words one lane holds of an 8-word x 8 tile.</summary>
internal struct MmaB { public uint B0, B1; }

internal struct Tf32Format : IMmaFormat
{
    public readonly int ElementsPerWord => 1;

    /// <summary>cvt.rna.tf32.f32 (see <see cref="Precisions.RoundTf32"/>); a NaN becomes one whose top 19 bits say NaN.</summary>
    public readonly uint Pack(float lo, float hi)
    {
        uint bits = Interop.FloatAsInt(lo);
        if ((bits & 0x7F800000u) == 0x7F800000u) return (bits & 0x7FFFFFu) != 0 ? 0x7FFFFFFFu : bits;
        return (bits + 0x1000u) & 0xFFFFE000u;
    }

    public readonly float Lo(uint word) => Interop.IntAsFloat(word);
    public readonly float Hi(uint word) => 0f;

    public readonly void Mma(int tile, MmaA a, MmaB b)
    {
        switch (tile)
        {
            case 0: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc0, tcacc1, tcacc2, tcacc3}, {%0, %1, %2, %3}, {%4, %5}, {tcacc0, tcacc1, tcacc2, tcacc3};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 1: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc4, tcacc5, tcacc6, tcacc7}, {%0, %1, %2, %3}, {%4, %5}, {tcacc4, tcacc5, tcacc6, tcacc7};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 2: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc8, tcacc9, tcacc10, tcacc11}, {%0, %1, %2, %3}, {%4, %5}, {tcacc8, tcacc9, tcacc10, tcacc11};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 3: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc12, tcacc13, tcacc14, tcacc15}, {%0, %1, %2, %3}, {%4, %5}, {tcacc12, tcacc13, tcacc14, tcacc15};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 4: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc16, tcacc17, tcacc18, tcacc19}, {%0, %1, %2, %3}, {%4, %5}, {tcacc16, tcacc17, tcacc18, tcacc19};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 5: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc20, tcacc21, tcacc22, tcacc23}, {%0, %1, %2, %3}, {%4, %5}, {tcacc20, tcacc21, tcacc22, tcacc23};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 6: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc24, tcacc25, tcacc26, tcacc27}, {%0, %1, %2, %3}, {%4, %5}, {tcacc24, tcacc25, tcacc26, tcacc27};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 7: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc28, tcacc29, tcacc30, tcacc31}, {%0, %1, %2, %3}, {%4, %5}, {tcacc28, tcacc29, tcacc30, tcacc31};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 8: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc32, tcacc33, tcacc34, tcacc35}, {%0, %1, %2, %3}, {%4, %5}, {tcacc32, tcacc33, tcacc34, tcacc35};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 9: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc36, tcacc37, tcacc38, tcacc39}, {%0, %1, %2, %3}, {%4, %5}, {tcacc36, tcacc37, tcacc38, tcacc39};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 10: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc40, tcacc41, tcacc42, tcacc43}, {%0, %1, %2, %3}, {%4, %5}, {tcacc40, tcacc41, tcacc42, tcacc43};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 11: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc44, tcacc45, tcacc46, tcacc47}, {%0, %1, %2, %3}, {%4, %5}, {tcacc44, tcacc45, tcacc46, tcacc47};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 12: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc48, tcacc49, tcacc50, tcacc51}, {%0, %1, %2, %3}, {%4, %5}, {tcacc48, tcacc49, tcacc50, tcacc51};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 13: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc52, tcacc53, tcacc54, tcacc55}, {%0, %1, %2, %3}, {%4, %5}, {tcacc52, tcacc53, tcacc54, tcacc55};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 14: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc56, tcacc57, tcacc58, tcacc59}, {%0, %1, %2, %3}, {%4, %5}, {tcacc56, tcacc57, tcacc58, tcacc59};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 15: CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tcacc60, tcacc61, tcacc62, tcacc63}, {%0, %1, %2, %3}, {%4, %5}, {tcacc60, tcacc61, tcacc62, tcacc63};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
        }
    }
}

internal struct F16Format : IMmaFormat
{
    public readonly int ElementsPerWord => 2;

    public readonly uint Pack(float lo, float hi)
        => Interop.FloatAsInt((ILGPU.Half)lo) | (uint)Interop.FloatAsInt((ILGPU.Half)hi) << 16;

    public readonly float Lo(uint word) => (float)Interop.IntAsFloat((ushort)(word & 0xFFFFu));
    public readonly float Hi(uint word) => (float)Interop.IntAsFloat((ushort)(word >> 16));

    public readonly void Mma(int tile, MmaA a, MmaB b)
    {
        switch (tile)
        {
            case 0: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc0, tcacc1, tcacc2, tcacc3}, {%0, %1, %2, %3}, {%4, %5}, {tcacc0, tcacc1, tcacc2, tcacc3};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 1: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc4, tcacc5, tcacc6, tcacc7}, {%0, %1, %2, %3}, {%4, %5}, {tcacc4, tcacc5, tcacc6, tcacc7};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 2: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc8, tcacc9, tcacc10, tcacc11}, {%0, %1, %2, %3}, {%4, %5}, {tcacc8, tcacc9, tcacc10, tcacc11};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 3: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc12, tcacc13, tcacc14, tcacc15}, {%0, %1, %2, %3}, {%4, %5}, {tcacc12, tcacc13, tcacc14, tcacc15};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 4: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc16, tcacc17, tcacc18, tcacc19}, {%0, %1, %2, %3}, {%4, %5}, {tcacc16, tcacc17, tcacc18, tcacc19};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 5: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc20, tcacc21, tcacc22, tcacc23}, {%0, %1, %2, %3}, {%4, %5}, {tcacc20, tcacc21, tcacc22, tcacc23};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 6: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc24, tcacc25, tcacc26, tcacc27}, {%0, %1, %2, %3}, {%4, %5}, {tcacc24, tcacc25, tcacc26, tcacc27};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 7: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc28, tcacc29, tcacc30, tcacc31}, {%0, %1, %2, %3}, {%4, %5}, {tcacc28, tcacc29, tcacc30, tcacc31};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 8: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc32, tcacc33, tcacc34, tcacc35}, {%0, %1, %2, %3}, {%4, %5}, {tcacc32, tcacc33, tcacc34, tcacc35};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 9: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc36, tcacc37, tcacc38, tcacc39}, {%0, %1, %2, %3}, {%4, %5}, {tcacc36, tcacc37, tcacc38, tcacc39};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 10: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc40, tcacc41, tcacc42, tcacc43}, {%0, %1, %2, %3}, {%4, %5}, {tcacc40, tcacc41, tcacc42, tcacc43};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 11: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc44, tcacc45, tcacc46, tcacc47}, {%0, %1, %2, %3}, {%4, %5}, {tcacc44, tcacc45, tcacc46, tcacc47};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 12: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc48, tcacc49, tcacc50, tcacc51}, {%0, %1, %2, %3}, {%4, %5}, {tcacc48, tcacc49, tcacc50, tcacc51};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 13: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc52, tcacc53, tcacc54, tcacc55}, {%0, %1, %2, %3}, {%4, %5}, {tcacc52, tcacc53, tcacc54, tcacc55};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 14: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc56, tcacc57, tcacc58, tcacc59}, {%0, %1, %2, %3}, {%4, %5}, {tcacc56, tcacc57, tcacc58, tcacc59};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 15: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {tcacc60, tcacc61, tcacc62, tcacc63}, {%0, %1, %2, %3}, {%4, %5}, {tcacc60, tcacc61, tcacc62, tcacc63};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
        }
    }
}

internal struct Bf16Format : IMmaFormat
{
    public readonly int ElementsPerWord => 2;

    public readonly uint Pack(float lo, float hi) => Bf16(lo) | Bf16(hi) << 16;

    public readonly float Lo(uint word) => Interop.IntAsFloat(word << 16);
    public readonly float Hi(uint word) => Interop.IntAsFloat(word & 0xFFFF0000u);

    /// <summary>cvt.rn.bf16.f32 (see <see cref="Precisions.Bf16Bits"/>).</summary>
    private static uint Bf16(float x)
    {
        uint bits = Interop.FloatAsInt(x);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits >> 16) & 0x8000u | 0x7FC0u;
        return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    }

    public readonly void Mma(int tile, MmaA a, MmaB b)
    {
        switch (tile)
        {
            case 0: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc0, tcacc1, tcacc2, tcacc3}, {%0, %1, %2, %3}, {%4, %5}, {tcacc0, tcacc1, tcacc2, tcacc3};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 1: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc4, tcacc5, tcacc6, tcacc7}, {%0, %1, %2, %3}, {%4, %5}, {tcacc4, tcacc5, tcacc6, tcacc7};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 2: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc8, tcacc9, tcacc10, tcacc11}, {%0, %1, %2, %3}, {%4, %5}, {tcacc8, tcacc9, tcacc10, tcacc11};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 3: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc12, tcacc13, tcacc14, tcacc15}, {%0, %1, %2, %3}, {%4, %5}, {tcacc12, tcacc13, tcacc14, tcacc15};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 4: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc16, tcacc17, tcacc18, tcacc19}, {%0, %1, %2, %3}, {%4, %5}, {tcacc16, tcacc17, tcacc18, tcacc19};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 5: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc20, tcacc21, tcacc22, tcacc23}, {%0, %1, %2, %3}, {%4, %5}, {tcacc20, tcacc21, tcacc22, tcacc23};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 6: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc24, tcacc25, tcacc26, tcacc27}, {%0, %1, %2, %3}, {%4, %5}, {tcacc24, tcacc25, tcacc26, tcacc27};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 7: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc28, tcacc29, tcacc30, tcacc31}, {%0, %1, %2, %3}, {%4, %5}, {tcacc28, tcacc29, tcacc30, tcacc31};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 8: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc32, tcacc33, tcacc34, tcacc35}, {%0, %1, %2, %3}, {%4, %5}, {tcacc32, tcacc33, tcacc34, tcacc35};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 9: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc36, tcacc37, tcacc38, tcacc39}, {%0, %1, %2, %3}, {%4, %5}, {tcacc36, tcacc37, tcacc38, tcacc39};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 10: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc40, tcacc41, tcacc42, tcacc43}, {%0, %1, %2, %3}, {%4, %5}, {tcacc40, tcacc41, tcacc42, tcacc43};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 11: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc44, tcacc45, tcacc46, tcacc47}, {%0, %1, %2, %3}, {%4, %5}, {tcacc44, tcacc45, tcacc46, tcacc47};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 12: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc48, tcacc49, tcacc50, tcacc51}, {%0, %1, %2, %3}, {%4, %5}, {tcacc48, tcacc49, tcacc50, tcacc51};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 13: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc52, tcacc53, tcacc54, tcacc55}, {%0, %1, %2, %3}, {%4, %5}, {tcacc52, tcacc53, tcacc54, tcacc55};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 14: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc56, tcacc57, tcacc58, tcacc59}, {%0, %1, %2, %3}, {%4, %5}, {tcacc56, tcacc57, tcacc58, tcacc59};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
            case 15: CudaAsm.Emit("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {tcacc60, tcacc61, tcacc62, tcacc63}, {%0, %1, %2, %3}, {%4, %5}, {tcacc60, tcacc61, tcacc62, tcacc63};", a.A0, a.A1, a.A2, a.A3, b.B0, b.B1); break;
        }
    }
}

/// <summary>
/// A warp's 64 x 32 block of the output as 64 fp32 PTX registers tcacc0 .. tcacc63 per lane: 4 x 4 tiles of 16 x 8,
/// tile t = 4 i + j (rows 16 i, columns 8 j) in tcacc(4t) .. tcacc(4t + 3) (its C/D fragment). The PTX text of an
/// Emit must be a constant, hence one case per register.
/// Off CUDA (<see cref="CudaAsm.IsSupported"/> false: only the tests' emulation on ILGPU's CPU accelerator, see
/// <see cref="KernelSelfTest.MmaEmulationGemmCase"/>) the accumulators live in <c>emu</c>, 64 floats of local memory,
/// and each mma is computed from the documented fragment layouts with warp shuffles; on CUDA that branch folds away.
/// </summary>
internal static class MmaAccumulators
{
    /// <summary>Declares the registers and zeroes them; once per kernel, before any loop.</summary>
    public static void Declare(ArrayView<float> emu)
    {
        if (!CudaAsm.IsSupported)
        {
            for (int i = 0; i < 64; i++) emu[i] = 0f;
            return;
        }
        CudaAsm.Emit(".reg .f32 tcacc<64>;\n\tmov.f32 tcacc0, 0f00000000;\n\tmov.f32 tcacc1, 0f00000000;\n\tmov.f32 tcacc2, 0f00000000;\n\tmov.f32 tcacc3, 0f00000000;\n\tmov.f32 tcacc4, 0f00000000;\n\tmov.f32 tcacc5, 0f00000000;\n\tmov.f32 tcacc6, 0f00000000;\n\tmov.f32 tcacc7, 0f00000000;\n\tmov.f32 tcacc8, 0f00000000;\n\tmov.f32 tcacc9, 0f00000000;\n\tmov.f32 tcacc10, 0f00000000;\n\tmov.f32 tcacc11, 0f00000000;\n\tmov.f32 tcacc12, 0f00000000;\n\tmov.f32 tcacc13, 0f00000000;\n\tmov.f32 tcacc14, 0f00000000;\n\tmov.f32 tcacc15, 0f00000000;\n\tmov.f32 tcacc16, 0f00000000;\n\tmov.f32 tcacc17, 0f00000000;\n\tmov.f32 tcacc18, 0f00000000;\n\tmov.f32 tcacc19, 0f00000000;\n\tmov.f32 tcacc20, 0f00000000;\n\tmov.f32 tcacc21, 0f00000000;\n\tmov.f32 tcacc22, 0f00000000;\n\tmov.f32 tcacc23, 0f00000000;\n\tmov.f32 tcacc24, 0f00000000;\n\tmov.f32 tcacc25, 0f00000000;\n\tmov.f32 tcacc26, 0f00000000;\n\tmov.f32 tcacc27, 0f00000000;\n\tmov.f32 tcacc28, 0f00000000;\n\tmov.f32 tcacc29, 0f00000000;\n\tmov.f32 tcacc30, 0f00000000;\n\tmov.f32 tcacc31, 0f00000000;\n\tmov.f32 tcacc32, 0f00000000;\n\tmov.f32 tcacc33, 0f00000000;\n\tmov.f32 tcacc34, 0f00000000;\n\tmov.f32 tcacc35, 0f00000000;\n\tmov.f32 tcacc36, 0f00000000;\n\tmov.f32 tcacc37, 0f00000000;\n\tmov.f32 tcacc38, 0f00000000;\n\tmov.f32 tcacc39, 0f00000000;\n\tmov.f32 tcacc40, 0f00000000;\n\tmov.f32 tcacc41, 0f00000000;\n\tmov.f32 tcacc42, 0f00000000;\n\tmov.f32 tcacc43, 0f00000000;\n\tmov.f32 tcacc44, 0f00000000;\n\tmov.f32 tcacc45, 0f00000000;\n\tmov.f32 tcacc46, 0f00000000;\n\tmov.f32 tcacc47, 0f00000000;\n\tmov.f32 tcacc48, 0f00000000;\n\tmov.f32 tcacc49, 0f00000000;\n\tmov.f32 tcacc50, 0f00000000;\n\tmov.f32 tcacc51, 0f00000000;\n\tmov.f32 tcacc52, 0f00000000;\n\tmov.f32 tcacc53, 0f00000000;\n\tmov.f32 tcacc54, 0f00000000;\n\tmov.f32 tcacc55, 0f00000000;\n\tmov.f32 tcacc56, 0f00000000;\n\tmov.f32 tcacc57, 0f00000000;\n\tmov.f32 tcacc58, 0f00000000;\n\tmov.f32 tcacc59, 0f00000000;\n\tmov.f32 tcacc60, 0f00000000;\n\tmov.f32 tcacc61, 0f00000000;\n\tmov.f32 tcacc62, 0f00000000;\n\tmov.f32 tcacc63, 0f00000000;");
    }

    /// <summary>Accumulates the product of the staged tiles over the whole 32-word slice (4 mma steps of 8 words).</summary>
    public static void Accumulate<TFormat>(ArrayView<uint> a, ArrayView<uint> b, int wm, int wn, int g, int q, ArrayView<float> emu)
        where TFormat : struct, IMmaFormat
    {
        for (int kb = 0; kb < MmaTile.Words; kb += 8)
        {
            var a0 = MmaTile.LoadA(a, wm, kb, g, q);
            var a1 = MmaTile.LoadA(a, wm + 16, kb, g, q);
            var a2 = MmaTile.LoadA(a, wm + 32, kb, g, q);
            var a3 = MmaTile.LoadA(a, wm + 48, kb, g, q);
            var b0 = MmaTile.LoadB(b, wn, kb, g, q);
            var b1 = MmaTile.LoadB(b, wn + 8, kb, g, q);
            var b2 = MmaTile.LoadB(b, wn + 16, kb, g, q);
            var b3 = MmaTile.LoadB(b, wn + 24, kb, g, q);
            Mma<TFormat>(0, a0, b0, emu); Mma<TFormat>(1, a0, b1, emu); Mma<TFormat>(2, a0, b2, emu); Mma<TFormat>(3, a0, b3, emu);
            Mma<TFormat>(4, a1, b0, emu); Mma<TFormat>(5, a1, b1, emu); Mma<TFormat>(6, a1, b2, emu); Mma<TFormat>(7, a1, b3, emu);
            Mma<TFormat>(8, a2, b0, emu); Mma<TFormat>(9, a2, b1, emu); Mma<TFormat>(10, a2, b2, emu); Mma<TFormat>(11, a2, b3, emu);
            Mma<TFormat>(12, a3, b0, emu); Mma<TFormat>(13, a3, b1, emu); Mma<TFormat>(14, a3, b2, emu); Mma<TFormat>(15, a3, b3, emu);
        }
    }

    private static void Mma<TFormat>(int tile, MmaA a, MmaB b, ArrayView<float> emu) where TFormat : struct, IMmaFormat
    {
        if (CudaAsm.IsSupported) default(TFormat).Mma(tile, a, b);
        else Emulate<TFormat>(tile, a, b, emu);
    }

    /// <summary>
    /// One mma.sync of tile <paramref name="tile"/> computed by the warp from the fragment layouts (see
    /// <see cref="IMmaFormat"/>): A word (r, kw) is held by lane 4·(r % 8) + kw % 4 in A0/A1 (kw &lt; 4) or A2/A3 (rows + 8
    /// in A1/A3); B word (kw, n) by lane 4·n + kw % 4 in B0 (kw &lt; 4) or B1; fp32 sums of exact products.
    /// </summary>
    private static void Emulate<TFormat>(int tile, MmaA a, MmaB b, ArrayView<float> emu) where TFormat : struct, IMmaFormat
    {
        var f = default(TFormat);
        int lane = Warp.LaneIdx, g = lane >> 2, q = lane & 3;
        float d0 = emu[4 * tile], d1 = emu[4 * tile + 1], d2 = emu[4 * tile + 2], d3 = emu[4 * tile + 3];
        for (int kw = 0; kw < 8; kw++)
        {
            int src = kw & 3;
            bool upper = kw >= 4;
            uint ag = Warp.Shuffle(upper ? a.A2 : a.A0, 4 * g + src);
            uint ag8 = Warp.Shuffle(upper ? a.A3 : a.A1, 4 * g + src);
            uint bn0 = Warp.Shuffle(upper ? b.B1 : b.B0, 8 * q + src);      // column 2q
            uint bn1 = Warp.Shuffle(upper ? b.B1 : b.B0, 8 * q + 4 + src);  // column 2q + 1
            d0 += f.Lo(ag) * f.Lo(bn0) + f.Hi(ag) * f.Hi(bn0);
            d1 += f.Lo(ag) * f.Lo(bn1) + f.Hi(ag) * f.Hi(bn1);
            d2 += f.Lo(ag8) * f.Lo(bn0) + f.Hi(ag8) * f.Hi(bn0);
            d3 += f.Lo(ag8) * f.Lo(bn1) + f.Hi(ag8) * f.Hi(bn1);
        }
        emu[4 * tile] = d0; emu[4 * tile + 1] = d1; emu[4 * tile + 2] = d2; emu[4 * tile + 3] = d3;
    }

    /// <summary>Accumulator register <paramref name="i"/> (a constant 0..63).</summary>
    public static float Read(int i, ArrayView<float> emu)
    {
        if (!CudaAsm.IsSupported) return emu[i];
        float v = 0f;
        switch (i)
        {
            case 0: CudaAsm.Emit("mov.b32 %0, tcacc0;", out v); break;
            case 1: CudaAsm.Emit("mov.b32 %0, tcacc1;", out v); break;
            case 2: CudaAsm.Emit("mov.b32 %0, tcacc2;", out v); break;
            case 3: CudaAsm.Emit("mov.b32 %0, tcacc3;", out v); break;
            case 4: CudaAsm.Emit("mov.b32 %0, tcacc4;", out v); break;
            case 5: CudaAsm.Emit("mov.b32 %0, tcacc5;", out v); break;
            case 6: CudaAsm.Emit("mov.b32 %0, tcacc6;", out v); break;
            case 7: CudaAsm.Emit("mov.b32 %0, tcacc7;", out v); break;
            case 8: CudaAsm.Emit("mov.b32 %0, tcacc8;", out v); break;
            case 9: CudaAsm.Emit("mov.b32 %0, tcacc9;", out v); break;
            case 10: CudaAsm.Emit("mov.b32 %0, tcacc10;", out v); break;
            case 11: CudaAsm.Emit("mov.b32 %0, tcacc11;", out v); break;
            case 12: CudaAsm.Emit("mov.b32 %0, tcacc12;", out v); break;
            case 13: CudaAsm.Emit("mov.b32 %0, tcacc13;", out v); break;
            case 14: CudaAsm.Emit("mov.b32 %0, tcacc14;", out v); break;
            case 15: CudaAsm.Emit("mov.b32 %0, tcacc15;", out v); break;
            case 16: CudaAsm.Emit("mov.b32 %0, tcacc16;", out v); break;
            case 17: CudaAsm.Emit("mov.b32 %0, tcacc17;", out v); break;
            case 18: CudaAsm.Emit("mov.b32 %0, tcacc18;", out v); break;
            case 19: CudaAsm.Emit("mov.b32 %0, tcacc19;", out v); break;
            case 20: CudaAsm.Emit("mov.b32 %0, tcacc20;", out v); break;
            case 21: CudaAsm.Emit("mov.b32 %0, tcacc21;", out v); break;
            case 22: CudaAsm.Emit("mov.b32 %0, tcacc22;", out v); break;
            case 23: CudaAsm.Emit("mov.b32 %0, tcacc23;", out v); break;
            case 24: CudaAsm.Emit("mov.b32 %0, tcacc24;", out v); break;
            case 25: CudaAsm.Emit("mov.b32 %0, tcacc25;", out v); break;
            case 26: CudaAsm.Emit("mov.b32 %0, tcacc26;", out v); break;
            case 27: CudaAsm.Emit("mov.b32 %0, tcacc27;", out v); break;
            case 28: CudaAsm.Emit("mov.b32 %0, tcacc28;", out v); break;
            case 29: CudaAsm.Emit("mov.b32 %0, tcacc29;", out v); break;
            case 30: CudaAsm.Emit("mov.b32 %0, tcacc30;", out v); break;
            case 31: CudaAsm.Emit("mov.b32 %0, tcacc31;", out v); break;
            case 32: CudaAsm.Emit("mov.b32 %0, tcacc32;", out v); break;
            case 33: CudaAsm.Emit("mov.b32 %0, tcacc33;", out v); break;
            case 34: CudaAsm.Emit("mov.b32 %0, tcacc34;", out v); break;
            case 35: CudaAsm.Emit("mov.b32 %0, tcacc35;", out v); break;
            case 36: CudaAsm.Emit("mov.b32 %0, tcacc36;", out v); break;
            case 37: CudaAsm.Emit("mov.b32 %0, tcacc37;", out v); break;
            case 38: CudaAsm.Emit("mov.b32 %0, tcacc38;", out v); break;
            case 39: CudaAsm.Emit("mov.b32 %0, tcacc39;", out v); break;
            case 40: CudaAsm.Emit("mov.b32 %0, tcacc40;", out v); break;
            case 41: CudaAsm.Emit("mov.b32 %0, tcacc41;", out v); break;
            case 42: CudaAsm.Emit("mov.b32 %0, tcacc42;", out v); break;
            case 43: CudaAsm.Emit("mov.b32 %0, tcacc43;", out v); break;
            case 44: CudaAsm.Emit("mov.b32 %0, tcacc44;", out v); break;
            case 45: CudaAsm.Emit("mov.b32 %0, tcacc45;", out v); break;
            case 46: CudaAsm.Emit("mov.b32 %0, tcacc46;", out v); break;
            case 47: CudaAsm.Emit("mov.b32 %0, tcacc47;", out v); break;
            case 48: CudaAsm.Emit("mov.b32 %0, tcacc48;", out v); break;
            case 49: CudaAsm.Emit("mov.b32 %0, tcacc49;", out v); break;
            case 50: CudaAsm.Emit("mov.b32 %0, tcacc50;", out v); break;
            case 51: CudaAsm.Emit("mov.b32 %0, tcacc51;", out v); break;
            case 52: CudaAsm.Emit("mov.b32 %0, tcacc52;", out v); break;
            case 53: CudaAsm.Emit("mov.b32 %0, tcacc53;", out v); break;
            case 54: CudaAsm.Emit("mov.b32 %0, tcacc54;", out v); break;
            case 55: CudaAsm.Emit("mov.b32 %0, tcacc55;", out v); break;
            case 56: CudaAsm.Emit("mov.b32 %0, tcacc56;", out v); break;
            case 57: CudaAsm.Emit("mov.b32 %0, tcacc57;", out v); break;
            case 58: CudaAsm.Emit("mov.b32 %0, tcacc58;", out v); break;
            case 59: CudaAsm.Emit("mov.b32 %0, tcacc59;", out v); break;
            case 60: CudaAsm.Emit("mov.b32 %0, tcacc60;", out v); break;
            case 61: CudaAsm.Emit("mov.b32 %0, tcacc61;", out v); break;
            case 62: CudaAsm.Emit("mov.b32 %0, tcacc62;", out v); break;
            case 63: CudaAsm.Emit("mov.b32 %0, tcacc63;", out v); break;
        }
        return v;
    }
}

/// <summary>
/// The block tile of the mma kernels: 128 rows (of A, or of Bᵀ) x 32 words of the reduction in shared memory, 8 warps
/// of 32 lanes, warp w computing rows (w % 2)·64 .. +64 of A against rows (w / 2)·32 .. +32 of Bᵀ: 4 x 4 mma tiles,
/// 64 fp32 accumulators per lane.
/// Word (row, kw) lives at row·36 + (kw ^ ((row / 8) % 4)). The stride 36 makes a fragment load (8 rows x 4 word
/// columns per warp) hit 32 different banks; the XOR swizzle makes a staging store of 32 consecutive rows at one word
/// column (the row-contiguous layouts: A transposed, B not transposed, the im2col gather) conflict-free as well, and
/// leaves a staging store along one row a permutation of that row.
/// </summary>
internal static class MmaTile
{
    public const int Rows = 128, Words = 32, Stride = 36, Threads = 256;
    public const int Size = Rows * Stride;

    public static int Index(int row, int kw) => row * Stride + (kw ^ ((row >> 3) & 3));

    /// <summary>
    /// Stages rows row0 .. +128 and reduction elements k0 .. +32·ElementsPerWord of a matrix whose element (row, k) is
    /// at <c>src[row·rowStride + k·kStride]</c>, packed into words; elements past <paramref name="rows"/> or
    /// <paramref name="k"/> are zero. Threads walk the contiguous dimension so global loads coalesce.
    /// </summary>
    public static void Stage<TFormat>(ArrayView<uint> tile, ArrayView<float> src, int rows, int k, int row0, int k0,
        long rowStride, long kStride, int t) where TFormat : struct, IMmaFormat
    {
        var f = default(TFormat);
        int epw = f.ElementsPerWord;
        if (kStride == 1)
        {
            int kw = t & 31, gk = k0 + kw * epw;
            for (int r = 0; r < Rows * Words / Threads; r++)
            {
                int row = (t >> 5) + 8 * r, gr = row0 + row;
                float x0 = 0f, x1 = 0f;
                if (gr < rows)
                {
                    long o = gr * rowStride;
                    if (gk < k) x0 = src[o + gk];
                    if (epw == 2 && gk + 1 < k) x1 = src[o + gk + 1];
                }
                tile[Index(row, kw)] = f.Pack(x0, x1);
            }
        }
        else
        {
            int row = t & 127, gr = row0 + row;
            bool rowValid = gr < rows;
            for (int r = 0; r < Rows * Words / Threads; r++)
            {
                int kw = (t >> 7) + 2 * r, gk = k0 + kw * epw;
                float x0 = 0f, x1 = 0f;
                if (rowValid)
                {
                    if (gk < k) x0 = src[gr * rowStride + gk * kStride];
                    if (epw == 2 && gk + 1 < k) x1 = src[gr * rowStride + (gk + 1) * kStride];
                }
                tile[Index(row, kw)] = f.Pack(x0, x1);
            }
        }
    }

    public static MmaA LoadA(ArrayView<uint> tile, int row, int kb, int g, int q)
    {
        MmaA a;
        a.A0 = tile[Index(row + g, kb + q)];
        a.A1 = tile[Index(row + g + 8, kb + q)];
        a.A2 = tile[Index(row + g, kb + q + 4)];
        a.A3 = tile[Index(row + g + 8, kb + q + 4)];
        return a;
    }

    public static MmaB LoadB(ArrayView<uint> tile, int row, int kb, int g, int q)
    {
        MmaB b;
        b.B0 = tile[Index(row + g, kb + q)];
        b.B1 = tile[Index(row + g, kb + q + 4)];
        return b;
    }
}
