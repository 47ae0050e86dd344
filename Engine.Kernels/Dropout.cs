using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Train-mode dropout with a counter-based mask: element i is kept when a hash of (seed, i) is at least p, so
// forward and backward recompute the same mask and nothing is stored. The hash is integer arithmetic only,
// so host and GPU masks are bit-identical.
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin =====
public static class Dropout
{
    /// <summary>
    /// Whether element <paramref name="index"/> survives: u(seed, index) >= p with u uniform on the 2^24 floats
    /// k / 2^24 in [0, 1). u is the top 24 bits of SplitMix64's finaliser (Steele, Lea and Flood, "Fast splittable
    /// pseudorandom number generators", OOPSLA 2014) applied to key(seed) + index·golden, key(seed) being the same
    /// finaliser of the seed, so nearby seeds give unrelated masks.
    /// </summary>
    public static bool Keep(ulong seed, long index, float p) => KeepKeyed(Key(seed), index, p);

    /// <summary>The per-seed key, computed once per launch.</summary>
    internal static ulong Key(ulong seed) => Mix64(seed ^ 0x6A09E667F3BCC908UL);

    internal static bool KeepKeyed(ulong key, long index, float p)
    {
        ulong z = Mix64(key + (ulong)index * 0x9E3779B97F4A7C15UL);
        float u = (z >> 40) * (1f / (1 << 24));
        return u >= p;
    }

    internal static ulong Mix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// The scale of kept elements: 1/(1-p) computed in double and rounded to float, as PyTorch's native_dropout
    /// multiplies by it (x * scale, not x / (1-p)); 0 when p = 1 (nothing is kept).
    /// </summary>
    internal static float Scale(float p)
    {
        if (!(p >= 0f && p <= 1f)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout: p must be in [0, 1]");
        return p == 1f ? 0f : (float)(1.0 / (1.0 - p));
    }

    /// <summary>y = keep(seed, i) ? x * 1/(1-p) : 0 over the flat tensor; y may be x.</summary>
    public static void ForwardHost(Span<float> y, ReadOnlySpan<float> x, float p, ulong seed)
    {
        Check.Length("y", y.Length, x.Length, "dropout");
        Apply(y, x, p, seed);
    }

    /// <summary>dx = keep(seed, i) ? dy * 1/(1-p) : 0 with the forward's mask (same seed and p); overwrites dx; dx may be dy.</summary>
    public static void BackwardHost(Span<float> dx, ReadOnlySpan<float> dy, float p, ulong seed)
    {
        Check.Length("dx", dx.Length, dy.Length, "dropout backward");
        Apply(dx, dy, p, seed);
    }

    /// <summary>Forward and backward are the same masked scale. Chunks in parallel for big tensors (the hash is the cost).</summary>
    static unsafe void Apply(Span<float> output, ReadOnlySpan<float> input, float p, ulong seed)
    {
        float scale = Scale(p);
        ulong key = Key(seed);
        const int Chunk = 1 << 15;
        int n = input.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* po = output) fixed (float* pi = input)
        {
            nint op = (nint)po, ip = (nint)pi;
            void Run(int ch)
            {
                float* o = (float*)op, x = (float*)ip;
                for (int i = ch * Chunk, end = Math.Min(n, i + Chunk); i < end; i++)
                    o[i] = KeepKeyed(key, i, p) ? x[i] * scale : 0f;
            }
            if (chunks <= 2) for (int ch = 0; ch < chunks; ch++) Run(ch);
            else Parallel.For(0, chunks, Run);
        }
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// Train-mode dropout on an ILGPU accelerator, grid-stride over the flat tensor with 64-bit indices; the mask is
/// <see cref="Dropout.Keep"/>'s, bit for bit. Kernels are compiled once in the constructor; launches go to the
/// default stream and are not synchronised.
/// </summary>
public sealed class DropoutGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ulong, float, float> _apply;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ulong, float, float> _applyVec4;

    /// <summary>
    /// Forces the general kernel (64-bit indices, scalar loads) that tensors of 2^31 elements or more and views not on
    /// a 16-byte boundary take, so tests cover it on small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public DropoutGpu(Accelerator a)
    {
        _acc = a;
        _applyVec4 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ulong, float, float>(DropoutVec4Kernel);
        _apply = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ulong, float, float>(DropoutKernel);
    }

    /// <summary>y = keep(seed, i) ? x * 1/(1-p) : 0; y may be x.</summary>
    public void Forward(ArrayView<float> y, ArrayView<float> x, float p, ulong seed)
    {
        Check.Length("y", y.Length, x.Length, "dropout");
        Launch(y, x, p, seed);
    }

    /// <summary>dx = keep(seed, i) ? dy * 1/(1-p) : 0; overwrites dx; dx may be dy.</summary>
    public void Backward(ArrayView<float> dx, ArrayView<float> dy, float p, ulong seed)
    {
        Check.Length("dx", dx.Length, dy.Length, "dropout backward");
        Launch(dx, dy, p, seed);
    }

    private void Launch(ArrayView<float> output, ArrayView<float> input, float p, ulong seed)
    {
        float scale = Dropout.Scale(p);
        if (input.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && KernelIndex.Fits32(input.Length) && KernelIndex.Aligned16(output) && KernelIndex.Aligned16(input))
            _applyVec4(Accelerators.GridStride(_acc, (input.Length + 3) / 4, gs), output, input, Dropout.Key(seed), p, scale);
        else _apply(Accelerators.GridStride(_acc, input.Length, gs), output, input, Dropout.Key(seed), p, scale);
    }

    /// <summary>
    /// <see cref="DropoutKernel"/> with 16-byte loads and stores over the first Length / 4 float4s (launcher: under 2^31
    /// elements, views 16-byte aligned), the mask of element 4i + k drawn from the same keyed hash of its flat index;
    /// the last Length % 4 elements go to the first threads.
    /// </summary>
    private static void DropoutVec4Kernel(ArrayView<float> output, ArrayView<float> input, ulong key, float p, float scale)
    {
        int n = (int)input.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var o4 = output.Cast<Float4>();
        var x4 = input.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            var v = x4[i];
            long e = 4L * i;
            o4[i] = new Float4(
                Dropout.KeepKeyed(key, e, p) ? v.X * scale : 0f, Dropout.KeepKeyed(key, e + 1, p) ? v.Y * scale : 0f,
                Dropout.KeepKeyed(key, e + 2, p) ? v.Z * scale : 0f, Dropout.KeepKeyed(key, e + 3, p) ? v.W * scale : 0f);
        }
        int t = (n4 << 2) + g;
        if (t < n) output[t] = Dropout.KeepKeyed(key, t, p) ? input[t] * scale : 0f;
    }

    private static void DropoutKernel(ArrayView<float> output, ArrayView<float> input, ulong key, float p, float scale)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < input.Length; i += stride)
            output[i] = Dropout.KeepKeyed(key, i, p) ? input[i] * scale : 0f;
    }
}
