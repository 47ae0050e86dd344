using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Analysis;

/// <summary>One GEMM version timed: its check against the host, the median time and its rate.</summary>
public sealed record GemmBenchRow(string Version, Precision Precision, string Check, bool Valid, double MedianMs, double Tflops, double? PeakTflops)
{
    public double? FractionOfPeak => PeakTflops is { } p && p > 0 && Valid ? Tflops / p : null;
}

/// <summary>
/// Square single-precision GEMM C = A·B (row-major, no transposes, fp32 in memory): each version is validated
/// against the host GEMM before it is timed (in full at an odd size that leaves edge tiles, and at sampled elements of
/// the timed size, against double-precision dot products of the same inputs rounded as the version rounds them), then
/// warmed up and timed launch by launch with a device synchronisation; the median is reported with TFLOP/s and the
/// fraction of the device's nominal peak (<see cref="DevicePeaks"/>).
/// </summary>
public static class GemmBenchmark
{
    /// <summary>The device's datasheet (or, for the host, FMA) peak in TFLOP/s for inputs in <paramref name="p"/>; null when unknown.</summary>
    static double? PeakTflops(ComputeDevice device, Precision p) => Profiling.DevicePeaks.For(device)?.Flops(p.Name()) / 1e12;

    /// <summary>The odd full-check size: not a multiple of any tile (64, 128) in any dimension.</summary>
    public const int CheckM = 509, CheckN = 515, CheckK = 523;
    const int Samples = 256;

    /// <summary>
    /// A version name as a user types it: the enum name (V2Tiled), its number (v2) or what follows the number
    /// (tiled, mma-tf32), in any case, '-' and '_' ignored. Every <see cref="GemmVersion"/> is accepted, so versions
    /// added to the enum need no edit here. Null when nothing or more than one version matches.
    /// </summary>
    public static GemmVersion? ParseVersion(string text, out string? why)
    {
        static string Norm(string s) => s.Replace("-", "").Replace("_", "").ToLowerInvariant();
        string want = Norm(text.Trim());
        var all = Enum.GetValues<GemmVersion>();
        why = null;
        foreach (var v in all) if (Norm(v.ToString()) == want) return v;
        static string Tail(string name) => name.TrimStart('v').TrimStart('0', '1', '2', '3', '4', '5', '6', '7', '8', '9');
        var matches = all.Where(v =>
        {
            string n = Norm(v.ToString());
            return want.Length > 0 && (Tail(n) == want || (char.IsDigit(want[^1]) && want.StartsWith('v') && n.StartsWith(want) && !char.IsDigit(n[want.Length])));
        }).ToList();
        if (matches.Count == 1) return matches[0];
        string names = string.Join(", ", all);
        why = matches.Count == 0 ? $"'{text}' is not a GEMM version (known: {names})" : $"'{text}' matches {string.Join(" and ", matches)}; name one";
        return null;
    }

    /// <summary>Random inputs in [-1, 1) from a seed.</summary>
    static float[] Random(int seed, long n)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = rng.NextSingle() * 2f - 1f;
        return a;
    }

    /// <summary>The GPU versions on <paramref name="device"/>, each validated then timed at size³.</summary>
    public static List<GemmBenchRow> RunGpu(IlgpuDevice device, IReadOnlyList<GemmVersion> versions, int size, int reps, Action<string>? log = null)
    {
        var acc = device.Accelerator;
        using var gemm = new GemmGpu(acc);
        var rows = new List<GemmBenchRow>();
        long n2 = (long)size * size;
        var a = Random(1, n2);
        var b = Random(2, n2);
        using var da = acc.Allocate1D(a);
        using var db = acc.Allocate1D(b);
        using var dc = acc.Allocate1D<float>(n2);
        var shape = new GemmShape(size, size, size);
        foreach (var v in versions)
        {
            var p = Precisions.Of(v);
            log?.Invoke($"gemm {v}: validating");
            string? check;
            bool valid;
            try
            {
                (valid, check) = CheckFull(acc, gemm, v, p);
                if (valid)
                {
                    gemm.Run(v, dc.View, da.View, db.View, shape);
                    acc.Synchronize();
                    (valid, string sampled) = CheckSampled(dc.GetAsArray1D(), a, b, size, p);
                    check += "; " + sampled;
                }
            }
            catch (Exception e) when (e is NotSupportedException or ArgumentException)
            {
                rows.Add(new GemmBenchRow(v.ToString(), p, e.Message, false, double.NaN, double.NaN, null));
                continue;
            }
            if (!valid)
            {
                rows.Add(new GemmBenchRow(v.ToString(), p, check, false, double.NaN, double.NaN, null));
                continue;
            }
            log?.Invoke($"gemm {v}: timing {reps} launches");
            gemm.Run(v, dc.View, da.View, db.View, shape); // warm-up (the check above compiled it)
            acc.Synchronize();
            var times = new double[reps];
            for (int i = 0; i < reps; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                gemm.Run(v, dc.View, da.View, db.View, shape);
                acc.Synchronize();
                times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            Array.Sort(times);
            double t = times[reps / 2];
            rows.Add(new GemmBenchRow(v.ToString(), p, check, true, t * 1e3, shape.Flops / t / 1e12, PeakTflops(device, p)));
        }
        return rows;
    }

    /// <summary>The host GEMM (V2Blocked, all cores) at size³; checked in full at the odd size against V1Naive.</summary>
    public static GemmBenchRow RunHost(HostDevice device, int size, int reps)
    {
        var s = new GemmShape(CheckM, CheckN, CheckK);
        var ca = Random(3, (long)CheckM * CheckK);
        var cb = Random(4, (long)CheckK * CheckN);
        var got = new float[(long)CheckM * CheckN];
        var want = new float[got.Length];
        Gemm.Host_V2Blocked(got, ca, cb, s);
        Gemm.Host_V1Naive(want, ca, cb, s);
        var cmp = Comparison.Of(got, want, Tolerance.Dot(CheckK));
        string check = $"{(cmp.Passed ? "ok" : "MISMATCH")} at {CheckM}x{CheckN}x{CheckK} vs V1Naive: max |Δ| {cmp.MaxAbsError:g2}{(cmp.Passed ? "" : $"; {cmp}")}";
        if (!cmp.Passed) return new GemmBenchRow("host V2Blocked", Precision.Fp32, check, false, double.NaN, double.NaN, null);
        long n2 = (long)size * size;
        var a = Random(1, n2);
        var b = Random(2, n2);
        var c = new float[n2];
        var shape = new GemmShape(size, size, size);
        Gemm.Host(c, a, b, shape); // warm-up: packing buffers, thread pool
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Gemm.Host(c, a, b, shape);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        Array.Sort(times);
        double t = times[reps / 2];
        return new GemmBenchRow("host V2Blocked", Precision.Fp32, check, true, t * 1e3, shape.Flops / t / 1e12, PeakTflops(device, Precision.Fp32));
    }

    /// <summary>The whole C at the odd size against the version's host twin, with its tolerance.</summary>
    static (bool, string) CheckFull(Accelerator acc, GemmGpu gemm, GemmVersion v, Precision p)
    {
        var s = new GemmShape(CheckM, CheckN, CheckK);
        var a = Random(3, (long)CheckM * CheckK);
        var b = Random(4, (long)CheckK * CheckN);
        var want = new float[(long)CheckM * CheckN];
        Gemm.HostRounded(p, want, a, b, s);
        using var da = acc.Allocate1D(a);
        using var db = acc.Allocate1D(b);
        using var dc = acc.Allocate1D<float>(want.Length);
        gemm.Run(v, dc.View, da.View, db.View, s);
        acc.Synchronize();
        var tol = p == Precision.Fp32 ? Tolerance.Dot(CheckK) : Precisions.MmaTolerance(p, CheckK, 1, 1);
        var cmp = Comparison.Of(dc.GetAsArray1D(), want, tol);
        return (cmp.Passed, $"{(cmp.Passed ? "ok" : "MISMATCH")} at {CheckM}x{CheckN}x{CheckK}: max |Δ| {cmp.MaxAbsError:g2} (tol {tol.Atol:g2}){(cmp.Passed ? "" : $"; {cmp}")}");
    }

    /// <summary>Sampled elements of the timed C against dot products in double of the rounded inputs.</summary>
    static (bool, string) CheckSampled(float[] c, float[] a, float[] b, int size, Precision p)
    {
        var rng = new Random(5);
        var tol = p == Precision.Fp32 ? Tolerance.Dot(size) : Precisions.MmaTolerance(p, size, 1, 1);
        double worst = 0;
        for (int s = 0; s < Samples; s++)
        {
            int i = rng.Next(size), j = rng.Next(size);
            double want = 0;
            for (int k = 0; k < size; k++) want += (double)p.Round(a[(long)i * size + k]) * p.Round(b[(long)k * size + j]);
            double d = Math.Abs(c[(long)i * size + j] - want);
            worst = Math.Max(worst, d);
            if (!(d <= tol.Atol + tol.Rtol * Math.Abs(want)))
                return (false, $"MISMATCH at ({i}, {j}) of {size}^3: {c[(long)i * size + j]:R} vs {want:R} (tol {tol.Atol:g2})");
        }
        return (true, $"{Samples} sampled elements of {size}^3 within {worst:g2}");
    }
}
