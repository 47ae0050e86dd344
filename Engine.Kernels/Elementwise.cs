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

/// <summary>Residual add and inference BatchNorm on an ILGPU accelerator, one grid-stride pass each.</summary>
public sealed class ElementwiseGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, long, float> _batchNorm;

    public ElementwiseGpu(Accelerator accelerator)
    {
        _acc = accelerator;
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
        _add(Accelerators.GridStride(_acc, y.Length, gs), y, a, b);
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
        _batchNorm(Accelerators.GridStride(_acc, y.Length, gs), y, x, scale, bias, mean, variance, c, plane, eps);
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
