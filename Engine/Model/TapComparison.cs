using Tp7.Engine.IO;

namespace Tp7.Engine.Model;

/// <summary>
/// Our activations at every named tap against a reference file that tools/make_reference.py writes (PyTorch's
/// VGG16 on the same input and weights): the measure is max |ours - torch| / max |torch| per tap. In fp32 the goal
/// is <see cref="Fp32Tolerance"/>. In a reduced precision (tf32, fp16, bf16) both engines round, each its own way,
/// so the file also holds PyTorch's taps in that precision (<c>tap_PRECISION/NAME</c>) and ours pass when their error
/// against PyTorch's fp32 is at most twice PyTorch's own error in that precision, plus <see cref="Fp32Tolerance"/>.
/// </summary>
public static class TapComparison
{
    /// <summary>The fp32 goal: max |ours - torch| at most 1e-4 of the tap's max |torch|.</summary>
    public const double Fp32Tolerance = 1e-4;

    /// <summary>The format version of tools/make_reference.py's files that this reader knows.</summary>
    public const string FormatVersion = "1";

    public sealed record TapError(string Tap, double MaxAbsDiff, double MaxAbsReference, int WorstIndex, float Ours, float Reference,
        double? PeerRelative, double Limit)
    {
        public double Relative => MaxAbsDiff / Math.Max(MaxAbsReference, 1e-30);
        public bool Passed => Relative <= Limit; // false for NaN

        public override string ToString()
            => $"{Tap,-8} {Relative:E2}" + (PeerRelative is { } p ? $"  (torch in this precision {p:E2})" : "") +
               $"  limit {Limit:E2}  {(Passed ? "ok" : $"FAILED: at index {WorstIndex} ours {Ours}, torch {Reference}")}";
    }

    /// <summary>Max |ours - reference| over the tap, where it is worst, and the tap's max |reference|. NaN anywhere fails.</summary>
    public static TapError Compare(string tap, ReadOnlySpan<float> ours, ReadOnlySpan<float> reference, ReadOnlySpan<float> peer = default)
    {
        if (ours.Length != reference.Length)
            throw new ArgumentException($"tap {tap}: ours has {ours.Length} values, the reference {reference.Length}");
        if (!peer.IsEmpty && peer.Length != reference.Length)
            throw new ArgumentException($"tap {tap}: the reference's reduced-precision tap has {peer.Length} values, its fp32 tap {reference.Length}");
        var (maxErr, maxRef, worst) = MaxError(ours, reference);
        double? peerRel = null;
        double limit = Fp32Tolerance;
        if (!peer.IsEmpty)
        {
            var (pErr, _, _) = MaxError(peer, reference);
            peerRel = pErr / Math.Max(maxRef, 1e-30);
            limit = 2 * peerRel.Value + Fp32Tolerance;
        }
        return new TapError(tap, maxErr, maxRef, worst, ours[worst], reference[worst], peerRel, limit);
    }

    static (double MaxErr, double MaxRef, int Worst) MaxError(ReadOnlySpan<float> got, ReadOnlySpan<float> want)
    {
        double maxRef = 0, maxErr = 0;
        int worst = 0;
        for (int i = 0; i < want.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(want[i]));
            double e = Math.Abs(got[i] - (double)want[i]);
            if (e > maxErr || double.IsNaN(e))
            {
                maxErr = e;
                worst = i;
                if (double.IsNaN(e)) break;
            }
        }
        return (maxErr, maxRef, worst);
    }

    /// <summary>The taps a reference file holds that are also VGG16 taps of ours (make_reference.py's list; 'logits' is fc8).</summary>
    public static IReadOnlyList<string> TapsIn(SafeTensorsFile file)
        => Vgg16Architecture.TapNames.Where(t => file.Contains("tap/" + t)).ToList();

    /// <summary>Opens a make_reference.py file, checking its format version and, for a reduced precision, that it holds PyTorch's taps in it.</summary>
    public static SafeTensorsFile OpenReference(string path, string precision)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such reference file (tools/make_reference.py writes one)");
        var file = SafeTensorsFile.Open(path);
        try
        {
            if (!file.Metadata.TryGetValue("format_version", out var v) || v != FormatVersion)
                throw new InvalidDataException($"{path}: reference format version {v ?? "(none)"}, tp7 reads {FormatVersion}: re-run tools/make_reference.py");
            if (!file.Contains("input") || TapsIn(file).Count == 0)
                throw new InvalidDataException($"{path}: no 'input' or no 'tap/NAME' tensors: not a tools/make_reference.py file");
            if (precision != "fp32" && !file.Tensors.Any(t => t.Key.StartsWith($"tap_{precision}/", StringComparison.Ordinal)))
                throw new InvalidDataException(
                    $"{path}: holds no PyTorch taps in {precision} (tap_{precision}/...): re-run tools/make_reference.py with --precision {precision}");
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Every tap of <paramref name="ours"/> (keyed by tap name) against the file's: fp32 taps, and PyTorch's taps in
    /// <paramref name="precision"/> as the peer when it is not fp32.
    /// </summary>
    public static IReadOnlyList<TapError> CompareAll(SafeTensorsFile file, IReadOnlyDictionary<string, float[]> ours, string precision)
    {
        var result = new List<TapError>();
        foreach (var tap in TapsIn(file))
        {
            if (!ours.TryGetValue(tap, out var got)) continue;
            var want = file.ReadFloat32("tap/" + tap);
            float[]? peer = precision != "fp32" && file.Contains($"tap_{precision}/{tap}") ? file.ReadFloat32($"tap_{precision}/{tap}") : null;
            result.Add(Compare(tap, got, want, peer));
        }
        return result;
    }
}
