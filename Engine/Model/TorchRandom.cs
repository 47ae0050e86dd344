using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Tp7.Engine.Model;

/// <summary>
/// Which of PyTorch's per-CPU builds of its kernels a <see cref="TorchGenerator"/> reproduces (ATen compiles
/// aten/src/ATen/native/cpu/ once per CPU_CAPABILITY and picks one at run time; ATEN_CPU_CAPABILITY overrides).
/// The builds draw the same numbers and transform them differently: <see cref="Avx2"/> turns them into normals
/// with avx_mathfun.h's polynomials and lets GCC fuse multiply-adds; <see cref="Default"/> calls libm's logf,
/// cosf and sinf with no fused operations.
/// </summary>
public enum TorchCpuKernels
{
    /// <summary>CPUs with AVX2 and FMA (torch 1.13 also runs its normal_ kernel from this build on AVX-512 CPUs).</summary>
    Avx2,
    /// <summary>ATEN_CPU_CAPABILITY=default, or a CPU without AVX2.</summary>
    Default,
}

/// <summary>
/// PyTorch 1.13's CPU generator (at::CPUGeneratorImpl) and its float32 samplers, bit for bit: what
/// <c>torch.manual_seed(seed)</c> followed by <c>tensor.uniform_(a, b)</c> / <c>tensor.normal_(mean, std)</c> on
/// float32 CPU tensors produce. Sources (torch 1.13): aten/src/ATen/core/MT19937RNGEngine.h (the engine),
/// CPUGeneratorImpl.cpp (random, random64, the cached normal), core/TransformationHelper.h (uniform_real),
/// core/DistributionsHelper.h (normal_distribution), native/cpu/DistributionTemplates.h (normal_fill,
/// normal_fill_16_AVX2, uniform_kernel), native/cpu/avx_mathfun.h (log256_ps, sincos256_ps).
/// Not thread-safe; one generator is one stream, as torch's default generator is.
/// </summary>
public sealed class TorchGenerator
{
    readonly Mt19937 engine;
    double? nextDoubleNormal;

    public TorchCpuKernels Kernels { get; }

    /// <summary><c>torch.manual_seed(seed)</c>: mt19937 seeded with the low 32 bits, no cached normal.</summary>
    public TorchGenerator(ulong seed, TorchCpuKernels kernels = TorchCpuKernels.Avx2)
    {
        engine = new Mt19937((uint)seed);
        Kernels = kernels;
    }

    /// <summary>CPUGeneratorImpl::random: the next 32-bit word.</summary>
    public uint Random() => engine.Next();

    /// <summary>CPUGeneratorImpl::random64: two words, the first one high.</summary>
    public ulong Random64()
    {
        ulong hi = engine.Next();
        return hi << 32 | engine.Next();
    }

    /// <summary>Draws and drops <paramref name="words"/> 32-bit words, as filling that many float32 elements with
    /// uniform_ does (each takes one word), without tempering or converting them.</summary>
    public void Skip(long words) => engine.Skip(words);

    /// <summary>
    /// <c>tensor.uniform_(from, to)</c> on float32: one word per element in order, x = U[0,1) as in
    /// <see cref="Mt19937.NextUniforms"/>, value = x * (to - from) + from in float (bounds rounded to float
    /// first). GCC fuses that multiply-add in the AVX2 build (compiled with -mfma) and cannot in the default one.
    /// </summary>
    public void Uniform(Span<float> values, double from, double to)
    {
        if (!(from <= to)) throw new ArgumentException($"uniform_ expects from <= to, got from={from} > to={to}");
        float f = (float)from, range = (float)to - f;
        engine.NextUniforms(values);
        if (Kernels == TorchCpuKernels.Avx2)
            for (int i = 0; i < values.Length; i++) values[i] = MathF.FusedMultiplyAdd(values[i], range, f);
        else
            for (int i = 0; i < values.Length; i++) values[i] = values[i] * range + f;
    }

    /// <summary>
    /// <c>tensor.normal_(mean, std)</c> on a contiguous float32 tensor (normal_kernel). At least 16 elements:
    /// normal_fill, i.e. every element first gets a U[0,1) draw, then each whole block of 16 is Box-Muller
    /// transformed in place (u1 = 1 - data[j], u2 = data[j + 8], j &lt; 8), and when the size is not a multiple
    /// of 16 the last 16 elements are drawn again and transformed again. Fewer than 16: one
    /// normal_distribution&lt;double&gt; sample per element, which draws two 53-bit uniforms per pair and keeps
    /// the pair's second value in the generator for the next such sample.
    /// Blocks are independent once drawn, so chunks are transformed on the thread pool while the next are drawn.
    /// </summary>
    public unsafe void Normal(Span<float> values, double mean, double std)
    {
        if (!(std >= 0)) throw new ArgumentException($"normal_ expects std >= 0.0, got std={std}");
        int n = values.Length;
        if (n < 16)
        {
            for (int i = 0; i < n; i++) values[i] = (float)NormalDouble(mean, std);
            return;
        }
        const int ChunkElements = 1 << 16;   // a multiple of 16
        float m = (float)mean, s = (float)std;
        var kernels = Kernels;
        int whole = n / 16 * 16;
        var transforms = new List<Task>();
        fixed (float* data = values)
        {
            float* p = data;
            try
            {
                for (int start = 0; start < whole; start += ChunkElements)
                {
                    int offset = start, length = Math.Min(ChunkElements, whole - start);
                    engine.NextUniforms(new Span<float>(p + offset, length));
                    if (whole <= ChunkElements) TransformBlocks(new Span<float>(p + offset, length), m, s, kernels);
                    else transforms.Add(Task.Run(() => TransformBlocks(new Span<float>(p + offset, length), m, s, kernels)));
                }
                engine.NextUniforms(values[whole..]);
            }
            finally { Task.WaitAll(transforms); }   // no task may outlive the pinning
        }
        if (n % 16 != 0)
        {
            var tail = values[(n - 16)..];
            engine.NextUniforms(tail);
            TransformBlocks(tail, m, s, kernels);
        }
    }

    /// <summary>at::normal_distribution&lt;double&gt;(mean, std) with CPUGeneratorImpl's cached second sample.</summary>
    double NormalDouble(double mean, double std)
    {
        bool fused = Kernels == TorchCpuKernels.Avx2;
        double ret;
        if (nextDoubleNormal is double cached)
        {
            nextDoubleNormal = null;
            ret = cached;
        }
        else
        {
            // uniform_real_distribution<double>(0, 1): the low 53 bits of random64() times 2^-53.
            double u1 = (Random64() & ((1UL << 53) - 1)) * (1.0 / (1UL << 53));
            double u2 = (Random64() & ((1UL << 53) - 1)) * (1.0 / (1UL << 53));
            double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u2));
            double theta = 2.0 * Math.PI * u1;
            nextDoubleNormal = r * Math.Sin(theta);
            ret = r * Math.Cos(theta);
        }
        return fused ? Math.FusedMultiplyAdd(ret, std, mean) : ret * std + mean;
    }

    static void TransformBlocks(Span<float> blocks, float mean, float std, TorchCpuKernels kernels)
    {
        for (int b = 0; b + 16 <= blocks.Length; b += 16)
        {
            var block = blocks.Slice(b, 16);
            if (kernels == TorchCpuKernels.Avx2) NormalFill16Avx2(block, mean, std);
            else NormalFill16Default(block, mean, std);
        }
    }

    /// <summary>normal_fill_16 of the default build: float arithmetic, libm's logf/cosf/sinf, nothing fused.</summary>
    static void NormalFill16Default(Span<float> d, float mean, float std)
    {
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1 - d[j];
            float u2 = d[j + 8];
            float radius = MathF.Sqrt(-2 * MathF.Log(u1));
            float theta = (float)(2.0 * Math.PI * u2);   // 2.0f * c10::pi<double> * u2, in double
            d[j] = radius * MathF.Cos(theta) * std + mean;
            d[j + 8] = radius * MathF.Sin(theta) * std + mean;
        }
    }

    /// <summary>normal_fill_16_AVX2: 8 lanes of u1 = 1 - d[0..8], u2 = d[8..16].</summary>
    static void NormalFill16Avx2(Span<float> d, float mean, float std)
    {
        var u1 = Vector256.Create(1f) - Vector256.Create<float>(d);
        var u2 = Vector256.Create<float>(d[8..]);
        var radius = Vector256.Sqrt(Vector256.Create(-2f) * AvxMathFun.Log(u1));
        var theta = Vector256.Create((float)(2.0 * Math.PI)) * u2;
        AvxMathFun.SinCos(theta, out var sin, out var cos);
        var s = Vector256.Create(std);
        var m = Vector256.Create(mean);
        Vector256.FusedMultiplyAdd(radius * cos, s, m).CopyTo(d);
        Vector256.FusedMultiplyAdd(radius * sin, s, m).CopyTo(d[8..]);
    }

    /// <summary>
    /// log256_ps and sincos256_ps of torch's avx_mathfun.h (Giovanni Garberoglio's AVX port of Julien Pommier's
    /// sse_mathfun, itself the cephes logf/sinf/cosf), operation for operation. Constants are written as the
    /// header writes them, double literals rounded to float. Where the header multiplies and then only adds or
    /// subtracts the product, GCC at -O2 with -mfma contracts the pair into one fused multiply-add
    /// (-ffp-contract=fast is GCC's default; of y * z + e * q1 the first product, the one it meets first): those
    /// places are FusedMultiplyAdd here. Checked against torch on 2^20 normals: unfusing any one whose product is
    /// inexact, or fusing the other product of a pair, changes some of them.
    /// </summary>
    static class AvxMathFun
    {
        static readonly Vector256<float> One = Vector256.Create(1f), Half = Vector256.Create(0.5f);

        public static Vector256<float> Log(Vector256<float> x)
        {
            var invalid = Vector256.LessThanOrEqual(x, Vector256<float>.Zero);
            x = Vector256.Max(x, Vector256.Create(0x00800000).AsSingle());   // smallest normal float
            var imm0 = Vector256.ShiftRightLogical(x.AsInt32(), 23);
            x = (x.AsInt32() & Vector256.Create(~0x7f800000)).AsSingle() | Half;
            imm0 -= Vector256.Create(0x7f);
            var e = Vector256.ConvertToSingle(imm0) + One;
            var mask = Vector256.LessThan(x, Vector256.Create((float)0.707106781186547524));
            var tmp = x & mask;
            x -= One;
            e -= One & mask;
            x += tmp;
            var z = x * x;
            var y = Vector256.FusedMultiplyAdd(Vector256.Create((float)7.0376836292E-2), x, Vector256.Create((float)-1.1514610310E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)1.1676998740E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)-1.2420140846E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)1.4249322787E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)-1.6668057665E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)2.0000714765E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)-2.4999993993E-1));
            y = Vector256.FusedMultiplyAdd(y, x, Vector256.Create((float)3.3333331174E-1));
            y *= x;
            y = Vector256.FusedMultiplyAdd(y, z, e * Vector256.Create((float)-2.12194440e-4));
            y = Vector256.FusedMultiplyAdd(z, -Half, y);
            x = Vector256.FusedMultiplyAdd(e, Vector256.Create((float)0.693359375), x + y);
            return x | invalid;   // NaN for x <= 0
        }

        public static void SinCos(Vector256<float> x, out Vector256<float> sin, out Vector256<float> cos)
        {
            var signMask = Vector256.Create(unchecked((int)0x80000000)).AsSingle();
            var signBitSin = x & signMask;
            x = Vector256.AndNot(x, signMask);   // |x|
            var y = x * Vector256.Create((float)1.27323954473516);   // 4 / pi
            var imm2 = Vector256.ConvertToInt32(y);                  // truncates, as cvttps2dq
            imm2 = (imm2 + Vector256.Create(1)) & Vector256.Create(~1);
            y = Vector256.ConvertToSingle(imm2);
            var imm4 = imm2;
            var swapSignBitSin = Vector256.ShiftLeft(imm2 & Vector256.Create(4), 29).AsSingle();
            var polyMask = Vector256.Equals(imm2 & Vector256.Create(2), Vector256<int>.Zero).AsSingle();
            // Extended precision modular arithmetic: x = ((x - y * DP1) - y * DP2) - y * DP3.
            x = Vector256.FusedMultiplyAdd(y, Vector256.Create((float)-0.78515625), x);
            x = Vector256.FusedMultiplyAdd(y, Vector256.Create((float)-2.4187564849853515625e-4), x);
            x = Vector256.FusedMultiplyAdd(y, Vector256.Create((float)-3.77489497744594108e-8), x);
            imm4 -= Vector256.Create(2);
            var signBitCos = Vector256.ShiftLeft(Vector256.AndNot(Vector256.Create(4), imm4), 29).AsSingle();
            signBitSin ^= swapSignBitSin;

            var z = x * x;
            // cos polynomial, 0 <= x <= pi/4
            var yc = Vector256.FusedMultiplyAdd(Vector256.Create((float)2.443315711809948E-005), z, Vector256.Create((float)-1.388731625493765E-003));
            yc = Vector256.FusedMultiplyAdd(yc, z, Vector256.Create((float)4.166664568298827E-002));
            yc *= z;
            yc = Vector256.FusedMultiplyAdd(yc, z, -(z * Half));
            yc += One;
            // sin polynomial
            var ys = Vector256.FusedMultiplyAdd(Vector256.Create((float)-1.9515295891E-4), z, Vector256.Create((float)8.3321608736E-3));
            ys = Vector256.FusedMultiplyAdd(ys, z, Vector256.Create((float)-1.6666654611E-1));
            ys *= z;
            ys = Vector256.FusedMultiplyAdd(ys, x, x);

            var ysin2 = polyMask & ys;
            var ysin1 = Vector256.AndNot(yc, polyMask);
            ys -= ysin2;
            yc -= ysin1;
            sin = (ysin1 + ysin2) ^ signBitSin;
            cos = (yc + ys) ^ signBitCos;
        }
    }
}

/// <summary>
/// The 32-bit Mersenne Twister MT19937 (Matsumoto and Nishimura, ACM TOMACS 8(1), 1998), seeded as
/// std::mt19937(seed) and torch's at::mt19937 are (init_genrand: s[i] = 1812433253 (s[i-1] ^ s[i-1] >> 30) + i).
/// </summary>
sealed class Mt19937
{
    const int N = 624, M = 397;
    readonly uint[] state = new uint[N];
    int next = N;   // index of the next untempered word; N = twist first

    public Mt19937(uint seed)
    {
        state[0] = seed;
        for (int i = 1; i < N; i++) state[i] = 1812433253u * (state[i - 1] ^ state[i - 1] >> 30) + (uint)i;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Next()
    {
        if (next == N) Twist();
        return Temper(state[next++]);
    }

    /// <summary>
    /// uniform_real_distribution&lt;float&gt;(0, 1) for each element in order: the low 24 bits of the next word
    /// times 2^-24 (TransformationHelper.h uniform_real). Tempers 8 words at a time.
    /// </summary>
    public void NextUniforms(Span<float> destination)
    {
        int i = 0;
        while (i < destination.Length)
        {
            if (next == N) Twist();
            int take = Math.Min(N - next, destination.Length - i);
            var words = state.AsSpan(next, take);
            var output = destination.Slice(i, take);
            int j = 0;
            for (; j + 8 <= take; j += 8)
            {
                var y = Temper(Vector256.Create<uint>(words[j..]));
                (Vector256.ConvertToSingle((y & Vector256.Create(0xFFFFFFu)).AsInt32()) * (1f / (1 << 24))).CopyTo(output[j..]);
            }
            for (; j < take; j++) output[j] = (Temper(words[j]) & 0xFFFFFF) * (1f / (1 << 24));
            next += take;
            i += take;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint Temper(uint y)
    {
        y ^= y >> 11;
        y ^= y << 7 & 0x9d2c5680u;
        y ^= y << 15 & 0xefc60000u;
        return y ^ y >> 18;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> Temper(Vector256<uint> y)
    {
        y ^= Vector256.ShiftRightLogical(y, 11);
        y ^= Vector256.ShiftLeft(y, 7) & Vector256.Create(0x9d2c5680u);
        y ^= Vector256.ShiftLeft(y, 15) & Vector256.Create(0xefc60000u);
        return y ^ Vector256.ShiftRightLogical(y, 18);
    }

    public void Skip(long words)
    {
        if (words < 0) throw new ArgumentOutOfRangeException(nameof(words), words, "cannot skip backwards");
        while (words > 0)
        {
            if (next == N) Twist();
            int take = (int)Math.Min(words, N - next);
            next += take;
            words -= take;
        }
    }

    /// <summary>Regenerates all N words: s[i] = s[i + M] ^ twist(upper bit of s[i], lower 31 bits of s[i + 1]),
    /// indices mod N, where s[i + M - N] past the end is already the new word. 8 words at a time: within a run
    /// of 8, s[i + 1 .. i + 8] are still old and s[i + M - N .. + 8] already new, as in the scalar order.</summary>
    void Twist()
    {
        var s = state.AsSpan();
        int i = 0;
        for (; i + 8 <= N - M; i += 8)
            (Vector256.Create<uint>(s[(i + M)..]) ^ Mix(Vector256.Create<uint>(s[i..]), Vector256.Create<uint>(s[(i + 1)..]))).CopyTo(s[i..]);
        for (; i < N - M; i++) s[i] = s[i + M] ^ Mix(s[i], s[i + 1]);
        for (; i + 8 <= N - 1; i += 8)
            (Vector256.Create<uint>(s[(i + M - N)..]) ^ Mix(Vector256.Create<uint>(s[i..]), Vector256.Create<uint>(s[(i + 1)..]))).CopyTo(s[i..]);
        for (; i < N - 1; i++) s[i] = s[i + M - N] ^ Mix(s[i], s[i + 1]);
        s[N - 1] = s[M - 1] ^ Mix(s[N - 1], s[0]);
        next = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> Mix(Vector256<uint> upper, Vector256<uint> lower)
    {
        var y = (upper & Vector256.Create(0x80000000u)) | (lower & Vector256.Create(0x7fffffffu));
        return Vector256.ShiftRightLogical(y, 1) ^ ((Vector256<uint>.Zero - (y & Vector256<uint>.One)) & Vector256.Create(0x9908b0dfu));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint Mix(uint upper, uint lower)
    {
        uint y = (upper & 0x80000000u) | (lower & 0x7fffffffu);
        return y >> 1 ^ (0u - (y & 1) & 0x9908b0dfu);
    }
}
