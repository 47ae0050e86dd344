using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Element-wise sums and per-channel affine maps: the residual Add of ResNets and inference-mode BatchNorm.
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them.

// ===== Host twin =====
public static partial class Elementwise
{
    /// <summary>y = a + b, all of one length; y may alias a or b.</summary>
    public static void AddHost(Span<float> y, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Check.Length("a", a.Length, y.Length, "add");
        Check.Length("b", b.Length, y.Length, "add");
        for (int i = 0; i < y.Length; i++) y[i] = a[i] + b[i];
    }

    /// <summary>
    /// Inference BatchNorm over NCHW: y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c], the per-channel
    /// factor and shift computed in double once per channel.
    /// </summary>
    public static void BatchNormHost(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> scale, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> variance, int n, int c, long plane, float eps)
    {
        var shape = (n, c, plane);
        Check.Length("y", y.Length, n * c * plane, shape);
        Check.Length("x", x.Length, n * c * plane, shape);
        foreach (var (name, len) in new[] { ("scale", scale.Length), ("bias", bias.Length), ("mean", mean.Length), ("var", variance.Length) })
            Check.Length(name, len, c, shape);
        var (a, b) = BatchNormFactors(scale, bias, mean, variance, eps);
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
            {
                int o = (int)(((long)i * c + ch) * plane);
                float f = a[ch], g = b[ch];
                for (int j = 0; j < plane; j++) y[o + j] = x[o + j] * f + g;
            }
    }

    /// <summary>Per-channel factor a = scale / sqrt(var + eps) and shift b = bias - mean·a, in double then rounded.</summary>
    public static (float[] A, float[] B) BatchNormFactors(ReadOnlySpan<float> scale, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> variance, float eps)
    {
        var a = new float[scale.Length];
        var b = new float[scale.Length];
        for (int ch = 0; ch < a.Length; ch++)
        {
            double f = scale[ch] / Math.Sqrt((double)variance[ch] + eps);
            a[ch] = (float)f;
            b[ch] = (float)(bias[ch] - mean[ch] * f);
        }
        return (a, b);
    }
}




// ===== ILGPU kernels =====

/// <summary>Kernel arguments of the 32-bit BatchNorm: divisors by the plane (H·W) and the channel count, and eps.</summary>
internal readonly struct BatchNormArgs
{
    public readonly FastDivmod Plane, C;
    public readonly float Eps;

    public BatchNormArgs(int c, int plane, float eps) { Plane = new FastDivmod(plane); C = new FastDivmod(c); Eps = eps; }
}

/// <summary>Residual add and inference BatchNorm on an ILGPU accelerator, one grid-stride pass each.</summary>
public sealed class ElementwiseGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, long, float> _batchNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _addVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs> _batchNorm32;

    /// <summary>
    /// Forces the general kernels (64-bit indices, scalar loads) that tensors of 2^31 elements or more and views not on
    /// a 16-byte boundary take, so tests cover them on small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public ElementwiseGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _addVec4 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddVec4Kernel);
        _batchNorm32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, BatchNormArgs>(BatchNorm32Kernel);
        _add = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel);
        _batchNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, long, float>(BatchNormKernel);
    }

    /// <summary>y = a + b; y may alias a or b.</summary>
    public void Add(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b)
    {
        Check.Length("a", a.Length, y.Length, "add");
        Check.Length("b", b.Length, y.Length, "add");
        if (y.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && KernelIndex.Fits32(y.Length) && KernelIndex.Aligned16(y) && KernelIndex.Aligned16(a) && KernelIndex.Aligned16(b))
            _addVec4(Accelerators.GridStride(_acc, (y.Length + 3) / 4, gs), y, a, b);
        else _add(Accelerators.GridStride(_acc, y.Length, gs), y, a, b);
    }

    /// <summary>Inference BatchNorm over NCHW, as <see cref="Elementwise.BatchNormHost"/> (factors computed per element in fp32).</summary>
    public void BatchNorm(ArrayView<float> y, ArrayView<float> x, ArrayView<float> scale, ArrayView<float> bias,
        ArrayView<float> mean, ArrayView<float> variance, int n, int c, long plane, float eps)
    {
        var shape = (n, c, plane);
        Check.Length("y", y.Length, n * c * plane, shape);
        Check.Length("x", x.Length, n * c * plane, shape);
        Check.Length("scale", scale.Length, c, shape);
        Check.Length("bias", bias.Length, c, shape);
        Check.Length("mean", mean.Length, c, shape);
        Check.Length("var", variance.Length, c, shape);
        if (y.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && KernelIndex.Fits32(y.Length))
            _batchNorm32(Accelerators.GridStride(_acc, y.Length, gs), y, x, scale, bias, mean, variance, new BatchNormArgs(c, (int)plane, eps));
        else _batchNorm(Accelerators.GridStride(_acc, y.Length, gs), y, x, scale, bias, mean, variance, c, plane, eps);
    }

    /// <summary>y = a + b over the first Length / 4 float4s with 16-byte loads (launcher: length &lt; 2^31, views 16-byte aligned), the last Length % 4 elements by the first threads.</summary>
    private static void AddVec4Kernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b)
    {
        int n = (int)y.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, g = Grid.GlobalIndex.X;
        var y4 = y.Cast<Float4>();
        var a4 = a.Cast<Float4>();
        var b4 = b.Cast<Float4>();
        for (int i = g; i < n4; i += stride)
        {
            Float4 u = a4[i], v = b4[i];
            y4[i] = new Float4(u.X + v.X, u.Y + v.Y, u.Z + v.Z, u.W + v.W);
        }
        int t = (n4 << 2) + g;
        if (t < n) y[t] = a[t] + b[t];
    }

    /// <summary>As <see cref="BatchNormKernel"/> with 32-bit indices (tensors under 2^31 elements) and the channel
    /// i / plane % C found by two multiply-shifts instead of two 64-bit divisions.</summary>
    private static void BatchNorm32Kernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> scale, ArrayView<float> bias,
        ArrayView<float> mean, ArrayView<float> variance, BatchNormArgs s)
    {
        int n = (int)y.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            s.C.DivRem(s.Plane.Div(i), out int ch);
            float f = scale[ch] / MathF.Sqrt(variance[ch] + s.Eps);
            y[i] = x[i] * f + (bias[ch] - mean[ch] * f);
        }
    }

    private static void AddKernel(ArrayView<float> y, ArrayView<float> a, ArrayView<float> b)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride) y[i] = a[i] + b[i];
    }

    private static void BatchNormKernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> scale, ArrayView<float> bias,
        ArrayView<float> mean, ArrayView<float> variance, int c, long plane, float eps)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride)
        {
            int ch = (int)(i / plane % c);
            float f = scale[ch] / MathF.Sqrt(variance[ch] + eps);
            y[i] = x[i] * f + (bias[ch] - mean[ch] * f);
        }
    }
}
