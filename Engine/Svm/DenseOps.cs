using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Tp7.Engine.Svm;

/// <summary>
/// The two inner loops of the SVM solver over one dense row: float features against double weights, with the
/// products accumulated in double (liblinear keeps w in double; the decision G = y·w·x − 1 feeds the stopping
/// test at 1e-4, so float accumulation over 4096 terms would eat into that margin).
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

    /// <summary>Σ_j x[j]² in double.</summary>
    public static double SquaredNorm(ReadOnlySpan<float> x)
    {
        double s = 0;
        foreach (float v in x) s += (double)v * v;
        return s;
    }
}
