using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Tp7.Engine.Svm;

/// <summary>
/// The two inner loops of the SVM solver over one dense row (dot product and axpy), for double weights (model
/// prediction) and float weights (training). Sums always end in double: the decision G = y·w·x − 1 feeds the
/// stopping test at 1e-4, and a plain float sum over 4096 terms would eat into that margin. The training solver
/// keeps w in float (liblinear keeps it in double): the parity tests show coefficients within ~1e-5 relative of
/// liblinear's and scikit-learn's, the same spread as between those two, and it halves the memory traffic.
/// </summary>
internal static class DenseOps
{
    /// <summary>Σ_j w[j]·x[j] in double.</summary>
    public static double Dot(ReadOnlySpan<double> w, ReadOnlySpan<float> x)
    {
        int d = x.Length;
        ref double wr = ref MemoryMarshal.GetReference(w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        int j = 0;
        double sum = 0;
        if (Vector256.IsHardwareAccelerated && d >= 16)
        {
            // Four independent accumulators hide the FMA latency; each 8-float load widens to two 4-double vectors.
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; j <= d - 16; j += 16)
            {
                var x0 = Vector256.LoadUnsafe(ref xr, (nuint)j);
                var x1 = Vector256.LoadUnsafe(ref xr, (nuint)(j + 8));
                a0 = Vector256.FusedMultiplyAdd(Vector256.WidenLower(x0), Vector256.LoadUnsafe(ref wr, (nuint)j), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.WidenUpper(x0), Vector256.LoadUnsafe(ref wr, (nuint)(j + 4)), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.WidenLower(x1), Vector256.LoadUnsafe(ref wr, (nuint)(j + 8)), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.WidenUpper(x1), Vector256.LoadUnsafe(ref wr, (nuint)(j + 12)), a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; j < d; j++) sum += Unsafe.Add(ref wr, j) * Unsafe.Add(ref xr, j);
        return sum;
    }

    /// <summary>w[j] += a·x[j].</summary>
    public static void Axpy(double a, ReadOnlySpan<float> x, Span<double> w)
    {
        int d = x.Length;
        if (w.Length < d) throw new ArgumentException($"w has {w.Length} elements, x has {d}");
        ref double wr = ref MemoryMarshal.GetReference(w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        int j = 0;
        if (Vector256.IsHardwareAccelerated && d >= 8)
        {
            var av = Vector256.Create(a);
            for (; j <= d - 8; j += 8)
            {
                var xv = Vector256.LoadUnsafe(ref xr, (nuint)j);
                ref double w0 = ref Unsafe.Add(ref wr, j);
                ref double w1 = ref Unsafe.Add(ref wr, j + 4);
                Vector256.FusedMultiplyAdd(Vector256.WidenLower(xv), av, Vector256.LoadUnsafe(ref w0)).StoreUnsafe(ref w0);
                Vector256.FusedMultiplyAdd(Vector256.WidenUpper(xv), av, Vector256.LoadUnsafe(ref w1)).StoreUnsafe(ref w1);
            }
        }
        for (; j < d; j++) Unsafe.Add(ref wr, j) += a * Unsafe.Add(ref xr, j);
    }

    /// <summary>
    /// Σ_j w[j]·x[j] for float weights: products and 64-element partial sums in float (8 lanes × 8 terms each, so
    /// a partial sum carries ~1e-7 relative error), partial sums accumulated in double across the row. Half the
    /// memory traffic of double weights, which is what bounds the solver when a class group's weights live in L2.
    /// </summary>
    public static double Dot(ReadOnlySpan<float> w, ReadOnlySpan<float> x)
    {
        int d = x.Length;
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        int j = 0;
        double sum = 0;
        if (Vector256.IsHardwareAccelerated && d >= 64)
        {
            Vector256<double> acc = default;
            for (; j <= d - 64; j += 64)
            {
                var p0 = Vector256.LoadUnsafe(ref wr, (nuint)j) * Vector256.LoadUnsafe(ref xr, (nuint)j);
                var p1 = Vector256.LoadUnsafe(ref wr, (nuint)(j + 8)) * Vector256.LoadUnsafe(ref xr, (nuint)(j + 8));
                p0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 16)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 16)), p0);
                p1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 24)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 24)), p1);
                p0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 32)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 32)), p0);
                p1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 40)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 40)), p1);
                p0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 48)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 48)), p0);
                p1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref wr, (nuint)(j + 56)), Vector256.LoadUnsafe(ref xr, (nuint)(j + 56)), p1);
                acc += (Vector256.WidenLower(p0) + Vector256.WidenUpper(p0)) + (Vector256.WidenLower(p1) + Vector256.WidenUpper(p1));
            }
            sum = Vector256.Sum(acc);
        }
        for (; j < d; j++) sum += (double)Unsafe.Add(ref wr, j) * Unsafe.Add(ref xr, j);
        return sum;
    }

    /// <summary>w[j] += a·x[j] for float weights (a rounded to float once).</summary>
    public static void Axpy(double a, ReadOnlySpan<float> x, Span<float> w)
    {
        int d = x.Length;
        if (w.Length < d) throw new ArgumentException($"w has {w.Length} elements, x has {d}");
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        float af = (float)a;
        int j = 0;
        if (Vector256.IsHardwareAccelerated && d >= 8)
        {
            var av = Vector256.Create(af);
            for (; j <= d - 8; j += 8)
            {
                ref float w0 = ref Unsafe.Add(ref wr, j);
                Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref xr, (nuint)j), av, Vector256.LoadUnsafe(ref w0)).StoreUnsafe(ref w0);
            }
        }
        for (; j < d; j++) Unsafe.Add(ref wr, j) = MathF.FusedMultiplyAdd(Unsafe.Add(ref xr, j), af, Unsafe.Add(ref wr, j));
    }

    /// <summary>Σ_j x[j]² in double.</summary>
    public static double SquaredNorm(ReadOnlySpan<float> x)
    {
        double s = 0;
        foreach (float v in x) s += (double)v * v;
        return s;
    }
}
