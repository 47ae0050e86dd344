using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Optimiser steps over one flat parameter vector (parameters, gradients and state each one allocation), with
// PyTorch 1.13's formulas and operation order, and the learning-rate schedules as closed forms.
// Parameters are updated in place; optimiser state (momentum buffer, m, v) is updated in place.

/// <summary>torch.optim.SGD's hyper-parameters (dampening 0).</summary>
public readonly record struct SgdArgs(float Lr, float Momentum = 0f, float WeightDecay = 0f, bool Nesterov = false);

/// <summary>torch.optim.AdamW's hyper-parameters (amsgrad off); <see cref="Step"/> is t, 1-based, already incremented.</summary>
public readonly record struct AdamWArgs(float Lr, float Beta1 = 0.9f, float Beta2 = 0.999f, float Eps = 1e-8f, float WeightDecay = 0.01f, int Step = 1);

/// <summary>
/// AdamW's per-step scalars. PyTorch computes them from python floats (doubles) and rounds each to float when
/// it meets a float tensor; here they are computed in double from the shortest decimal that round-trips each
/// float argument (0.9f → 0.9), which is the number a user typed in python.
/// </summary>
internal readonly struct AdamWScalars
{
    public readonly float Decay, Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, Bc2Sqrt, StepSize, Eps;

    public AdamWScalars(AdamWArgs a)
    {
        if (a.Step < 1) throw new ArgumentOutOfRangeException(nameof(a), a.Step, "adamw: Step is t, 1-based, already incremented");
        double lr = AsTyped(a.Lr), b1 = AsTyped(a.Beta1), b2 = AsTyped(a.Beta2), wd = AsTyped(a.WeightDecay);
        double bc1 = 1 - Math.Pow(b1, a.Step), bc2 = 1 - Math.Pow(b2, a.Step);
        Decay = (float)(1 - lr * wd);
        Beta1 = a.Beta1; OneMinusBeta1 = (float)(1 - b1);
        Beta2 = a.Beta2; OneMinusBeta2 = (float)(1 - b2);
        Bc2Sqrt = (float)Math.Sqrt(bc2);
        StepSize = (float)(lr / bc1);
        Eps = a.Eps;
    }

    internal static double AsTyped(float f) => double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}

/// <summary>SGD's scalars as kernel arguments (ints for flags: kernel parameter structs must be blittable).</summary>
internal readonly struct SgdScalars
{
    public readonly float Lr, Momentum, WeightDecay;
    public readonly int HasMomentum, Nesterov, HasWeightDecay;

    public SgdScalars(SgdArgs a)
    {
        if (a.Nesterov && a.Momentum == 0f) throw new ArgumentException("sgd: Nesterov momentum requires Momentum != 0 (as torch.optim.SGD)");
        Lr = a.Lr; Momentum = a.Momentum; WeightDecay = a.WeightDecay;
        HasMomentum = a.Momentum != 0f ? 1 : 0; Nesterov = a.Nesterov ? 1 : 0; HasWeightDecay = a.WeightDecay != 0f ? 1 : 0;
    }
}

// ===== Host twin =====
public static class Optimizers
{
    const int Chunk = 1 << 16;

    /// <summary>
    /// torch.optim.SGD (1.13, dampening 0), per element in float:
    ///   d = g + wd·p (when wd ≠ 0);  if momentum ≠ 0: buf = momentum·buf + d, d = nesterov ? d + momentum·buf : buf;  p -= lr·d.
    /// buf starts at zero, so the first step gives buf = d exactly, as PyTorch's clone. momentumBuf may be empty when
    /// Momentum is 0. Fastest host version.
    /// </summary>
    public static void SgdStepHost(Span<float> param, ReadOnlySpan<float> grad, Span<float> momentumBuf, SgdArgs a)
        => SgdStepHost_V2Simd(param, grad, momentumBuf, a);

    /// <summary>Version 2: 8 lanes at a time (separate multiplies and adds, no FMA, so bit-identical to V1), chunks in parallel.</summary>
    public static unsafe void SgdStepHost_V2Simd(Span<float> param, ReadOnlySpan<float> grad, Span<float> momentumBuf, SgdArgs a)
    {
        var s = CheckSgd(param.Length, grad.Length, momentumBuf.Length, a);
        int n = param.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* pp = param) fixed (float* pg = grad) fixed (float* pb = momentumBuf)
        {
            nint P = (nint)pp, G = (nint)pg, B = (nint)pb;
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            void Run(int ch)
            {
                float* p = (float*)P, g = (float*)G, b = (float*)B;
                int i = ch * Chunk, end = Math.Min(n, i + Chunk);
                var lr = Vector256.Create(s.Lr); var mom = Vector256.Create(s.Momentum); var wd = Vector256.Create(s.WeightDecay);
                for (; i + 8 <= end; i += 8)
                {
                    var pv = Vector256.Load(p + i);
                    var d = Vector256.Load(g + i);
                    if (s.HasWeightDecay != 0) d += wd * pv;
                    if (s.HasMomentum != 0)
                    {
                        var buf = mom * Vector256.Load(b + i) + d;
                        Vector256.Store(buf, b + i);
                        d = s.Nesterov != 0 ? d + mom * buf : buf;
                    }
                    Vector256.Store(pv - lr * d, p + i);
                }
                for (; i < end; i++) SgdElement(p, g, b, i, s);
            }
            if (chunks <= 2) for (int ch = 0; ch < chunks; ch++) Run(ch);
            else Parallel.For(0, chunks, Run);
        }
    }

    /// <summary>Version 1: one element at a time. The specification.</summary>
    public static unsafe void SgdStepHost_V1Naive(Span<float> param, ReadOnlySpan<float> grad, Span<float> momentumBuf, SgdArgs a)
    {
        var s = CheckSgd(param.Length, grad.Length, momentumBuf.Length, a);
        fixed (float* p = param) fixed (float* g = grad) fixed (float* b = momentumBuf)
            for (int i = 0; i < param.Length; i++) SgdElement(p, g, b, i, s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void SgdElement(float* p, float* g, float* b, int i, in SgdScalars s)
    {
        float d = g[i];
        if (s.HasWeightDecay != 0) d += s.WeightDecay * p[i];
        if (s.HasMomentum != 0)
        {
            float buf = s.Momentum * b[i] + d;
            b[i] = buf;
            d = s.Nesterov != 0 ? d + s.Momentum * buf : buf;
        }
        p[i] -= s.Lr * d;
    }

    internal static SgdScalars CheckSgd(long param, long grad, long buf, SgdArgs a)
    {
        var s = new SgdScalars(a);
        Check.Length("grad", grad, param, $"sgd over {param} parameters");
        if (s.HasMomentum != 0) Check.Length("momentumBuf", buf, param, $"sgd over {param} parameters, momentum {a.Momentum}");
        return s;
    }

    /// <summary>
    /// torch.optim.AdamW (1.13, single-tensor path, amsgrad off), per element in float with the scalars of
    /// <see cref="AdamWScalars"/>:
    ///   p *= 1 - lr·wd;  m = b1·m + (1-b1)·g;  v = b2·v + (1-b2)·g·g;  denom = sqrt(v)/sqrt(1-b2^t) + eps;  p -= (lr/(1-b1^t))·m / denom.
    /// m and v start at zero. Fastest host version.
    /// </summary>
    public static void AdamWStepHost(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, AdamWArgs a)
        => AdamWStepHost_V2Simd(param, grad, m, v, a);

    /// <summary>Version 2: 8 lanes at a time (no FMA; Vector256.Sqrt is correctly rounded, so bit-identical to V1), chunks in parallel.</summary>
    public static unsafe void AdamWStepHost_V2Simd(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, AdamWArgs a)
    {
        var s = CheckAdamW(param.Length, grad.Length, m.Length, v.Length, a);
        int n = param.Length, chunks = (n + Chunk - 1) / Chunk;
        fixed (float* pp = param) fixed (float* pg = grad) fixed (float* pm = m) fixed (float* pv = v)
        {
            nint P = (nint)pp, G = (nint)pg, M = (nint)pm, V = (nint)pv;
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            void Run(int ch)
            {
                float* p = (float*)P, g = (float*)G, mm = (float*)M, vv = (float*)V;
                int i = ch * Chunk, end = Math.Min(n, i + Chunk);
                var decay = Vector256.Create(s.Decay);
                var b1 = Vector256.Create(s.Beta1); var c1 = Vector256.Create(s.OneMinusBeta1);
                var b2 = Vector256.Create(s.Beta2); var c2 = Vector256.Create(s.OneMinusBeta2);
                var bc2 = Vector256.Create(s.Bc2Sqrt); var step = Vector256.Create(s.StepSize); var eps = Vector256.Create(s.Eps);
                for (; i + 8 <= end; i += 8)
                {
                    var gv = Vector256.Load(g + i);
                    var pr = Vector256.Load(p + i) * decay;
                    var mv = Vector256.Load(mm + i) * b1 + c1 * gv;
                    var vr = Vector256.Load(vv + i) * b2 + c2 * gv * gv;
                    Vector256.Store(mv, mm + i);
                    Vector256.Store(vr, vv + i);
                    var denom = Vector256.Sqrt(vr) / bc2 + eps;
                    Vector256.Store(pr - step * mv / denom, p + i);
                }
                for (; i < end; i++) AdamWElement(p, g, mm, vv, i, s);
            }
            if (chunks <= 2) for (int ch = 0; ch < chunks; ch++) Run(ch);
            else Parallel.For(0, chunks, Run);
        }
    }

    /// <summary>Version 1: one element at a time. The specification.</summary>
    public static unsafe void AdamWStepHost_V1Naive(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, AdamWArgs a)
    {
        var s = CheckAdamW(param.Length, grad.Length, m.Length, v.Length, a);
        fixed (float* p = param) fixed (float* g = grad) fixed (float* pm = m) fixed (float* pv = v)
            for (int i = 0; i < param.Length; i++) AdamWElement(p, g, pm, pv, i, s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void AdamWElement(float* p, float* g, float* m, float* v, int i, in AdamWScalars s)
    {
        float gi = g[i];
        float pi = p[i] * s.Decay;
        float mi = m[i] * s.Beta1 + s.OneMinusBeta1 * gi;
        float vi = v[i] * s.Beta2 + s.OneMinusBeta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = MathF.Sqrt(vi) / s.Bc2Sqrt + s.Eps;
        p[i] = pi - s.StepSize * mi / denom;
    }

    internal static AdamWScalars CheckAdamW(long param, long grad, long m, long v, AdamWArgs a)
    {
        var s = new AdamWScalars(a);
        var shape = $"adamw over {param} parameters";
        Check.Length("grad", grad, param, shape);
        Check.Length("m", m, param, shape);
        Check.Length("v", v, param, shape);
        return s;
    }
}

/// <summary>Learning-rate schedules as PyTorch's closed forms (the lr of epoch <c>epoch</c>, 0-based).</summary>
public static class LrSchedule
{
    /// <summary>torch.optim.lr_scheduler.StepLR: base · gamma^⌊epoch / stepSize⌋.</summary>
    public static double Step(double baseLr, int epoch, int stepSize, double gamma)
    {
        if (stepSize <= 0) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "StepLR: stepSize must be positive");
        if (epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "StepLR: epoch must be non-negative");
        return baseLr * Math.Pow(gamma, epoch / stepSize);
    }

    /// <summary>torch.optim.lr_scheduler.CosineAnnealingLR's closed form: min + (base - min)·(1 + cos(π·epoch/T))/2.</summary>
    public static double Cosine(double baseLr, int epoch, int totalEpochs, double minLr = 0)
    {
        if (totalEpochs <= 0) throw new ArgumentOutOfRangeException(nameof(totalEpochs), totalEpochs, "CosineAnnealingLR: totalEpochs (T_max) must be positive");
        if (epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "CosineAnnealingLR: epoch must be non-negative");
        return minLr + (baseLr - minLr) * (1 + Math.Cos(Math.PI * epoch / totalEpochs)) / 2;
    }
}




// ===== ILGPU kernels =====

/// <summary>
/// SGD and AdamW steps on an ILGPU accelerator: one grid-stride launch over the flat parameter vector (64-bit
/// indices), same formulas and order as the host. The GPU compiler may contract a multiply and an add into an FMA,
/// so results agree with the host to rounding. Kernels are compiled once in the constructor; launches go to the
/// default stream and are not synchronised.
/// </summary>
public sealed class OptimizersGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdScalars> _sgd;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWScalars> _adamW;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdScalars> _sgdVec4;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWScalars> _adamWVec4;

    /// <summary>
    /// Forces the general kernels (64-bit indices, scalar loads) that vectors of 2^31 elements or more and views not on
    /// a 16-byte boundary take, so tests cover them on small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public OptimizersGpu(Accelerator a)
    {
        _acc = a;
        _sgdVec4 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdScalars>(SgdVec4Kernel);
        _adamWVec4 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWScalars>(AdamWVec4Kernel);
        _sgd = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdScalars>(SgdKernel);
        _adamW = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamWScalars>(AdamWKernel);
    }

    /// <summary>torch.optim.SGD's step, as <see cref="Optimizers.SgdStepHost"/>; momentumBuf may be empty when Momentum is 0.</summary>
    public void SgdStep(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuf, SgdArgs a)
    {
        var s = Optimizers.CheckSgd(param.Length, grad.Length, momentumBuf.Length, a);
        if (param.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        // Without momentum the buffer is never touched; param stands in (some backends reject empty views).
        var buf = s.HasMomentum != 0 ? momentumBuf : param;
        if (Vec4(param, grad, buf, buf)) _sgdVec4(Accelerators.GridStride(_acc, (param.Length + 3) / 4, gs), param, grad, buf, s);
        else _sgd(Accelerators.GridStride(_acc, param.Length, gs), param, grad, buf, s);
    }

    /// <summary>torch.optim.AdamW's step, as <see cref="Optimizers.AdamWStepHost"/>.</summary>
    public void AdamWStep(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, AdamWArgs a)
    {
        var s = Optimizers.CheckAdamW(param.Length, grad.Length, m.Length, v.Length, a);
        if (param.Length == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (Vec4(param, grad, m, v)) _adamWVec4(Accelerators.GridStride(_acc, (param.Length + 3) / 4, gs), param, grad, m, v, s);
        else _adamW(Accelerators.GridStride(_acc, param.Length, gs), param, grad, m, v, s);
    }

    private bool Vec4(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> d)
        => !UseGeneralKernels && KernelIndex.Fits32(a.Length)
           && KernelIndex.Aligned16(a) && KernelIndex.Aligned16(b) && KernelIndex.Aligned16(c) && KernelIndex.Aligned16(d);

    /// <summary>One element of <see cref="SgdKernel"/>'s step: the new parameter, the momentum buffer updated in place.</summary>
    private static float SgdOne(float pi, float d, ref float b, SgdScalars s)
    {
        if (s.HasWeightDecay != 0) d += s.WeightDecay * pi;
        if (s.HasMomentum != 0)
        {
            b = s.Momentum * b + d;
            d = s.Nesterov != 0 ? d + s.Momentum * b : b;
        }
        return pi - s.Lr * d;
    }

    // The Vec4 kernels: the first Length / 4 float4s grid-stride with 32-bit indices and 16-byte loads and stores
    // (launcher: under 2^31 elements, every view 16-byte aligned), the last Length % 4 elements by the first threads;
    // per element the arithmetic of the general kernels, in the same order.

    private static void SgdVec4Kernel(ArrayView<float> p, ArrayView<float> g, ArrayView<float> buf, SgdScalars s)
    {
        int n = (int)p.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, t0 = Grid.GlobalIndex.X;
        var p4 = p.Cast<Float4>();
        var g4 = g.Cast<Float4>();
        var b4 = buf.Cast<Float4>();
        for (int i = t0; i < n4; i += stride)
        {
            Float4 pv = p4[i], gv = g4[i];
            Float4 bv = s.HasMomentum != 0 ? b4[i] : default;
            pv = new Float4(SgdOne(pv.X, gv.X, ref bv.X, s), SgdOne(pv.Y, gv.Y, ref bv.Y, s),
                SgdOne(pv.Z, gv.Z, ref bv.Z, s), SgdOne(pv.W, gv.W, ref bv.W, s));
            if (s.HasMomentum != 0) b4[i] = bv;
            p4[i] = pv;
        }
        int t = (n4 << 2) + t0;
        if (t < n)
        {
            float b = s.HasMomentum != 0 ? buf[t] : 0f;
            p[t] = SgdOne(p[t], g[t], ref b, s);
            if (s.HasMomentum != 0) buf[t] = b;
        }
    }

    /// <summary>One element of <see cref="AdamWKernel"/>'s step: the new parameter, both moments updated in place.</summary>
    private static float AdamWOne(float p, float gi, ref float m, ref float v, AdamWScalars s)
    {
        float pi = p * s.Decay;
        m = m * s.Beta1 + s.OneMinusBeta1 * gi;
        v = v * s.Beta2 + s.OneMinusBeta2 * gi * gi;
        float denom = MathF.Sqrt(v) / s.Bc2Sqrt + s.Eps;
        return pi - s.StepSize * m / denom;
    }

    private static void AdamWVec4Kernel(ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v, AdamWScalars s)
    {
        int n = (int)p.Length, n4 = n >> 2, stride = Grid.DimX * Group.DimX, t0 = Grid.GlobalIndex.X;
        var p4 = p.Cast<Float4>();
        var g4 = g.Cast<Float4>();
        var m4 = m.Cast<Float4>();
        var v4 = v.Cast<Float4>();
        for (int i = t0; i < n4; i += stride)
        {
            Float4 pv = p4[i], gv = g4[i], mv = m4[i], vv = v4[i];
            pv = new Float4(AdamWOne(pv.X, gv.X, ref mv.X, ref vv.X, s), AdamWOne(pv.Y, gv.Y, ref mv.Y, ref vv.Y, s),
                AdamWOne(pv.Z, gv.Z, ref mv.Z, ref vv.Z, s), AdamWOne(pv.W, gv.W, ref mv.W, ref vv.W, s));
            m4[i] = mv;
            v4[i] = vv;
            p4[i] = pv;
        }
        int t = (n4 << 2) + t0;
        if (t < n)
        {
            float mt = m[t], vt = v[t];
            p[t] = AdamWOne(p[t], g[t], ref mt, ref vt, s);
            m[t] = mt;
            v[t] = vt;
        }
    }

    private static void SgdKernel(ArrayView<float> p, ArrayView<float> g, ArrayView<float> buf, SgdScalars s)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < p.Length; i += stride)
        {
            float pi = p[i];
            float d = g[i];
            if (s.HasWeightDecay != 0) d += s.WeightDecay * pi;
            if (s.HasMomentum != 0)
            {
                float b = s.Momentum * buf[i] + d;
                buf[i] = b;
                d = s.Nesterov != 0 ? d + s.Momentum * b : b;
            }
            p[i] = pi - s.Lr * d;
        }
    }

    private static void AdamWKernel(ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v, AdamWScalars s)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < p.Length; i += stride)
        {
            float gi = g[i];
            float pi = p[i] * s.Decay;
            float mi = m[i] * s.Beta1 + s.OneMinusBeta1 * gi;
            float vi = v[i] * s.Beta2 + s.OneMinusBeta2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            float denom = MathF.Sqrt(vi) / s.Bc2Sqrt + s.Eps;
            p[i] = pi - s.StepSize * mi / denom;
        }
    }
}
