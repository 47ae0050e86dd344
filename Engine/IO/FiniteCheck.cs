using System.Numerics;
using System.Runtime.InteropServices;

namespace Tp7.Engine.IO;

/// <summary>
/// Refuses NaN and ±Inf in loaded tensors. One NaN weight turns every activation after it into NaN, and the symptom
/// (an accuracy of 1/classes, a "diverged" loss) says nothing about the file; so loaders scan what they read and name
/// the file, the tensor and the first bad element.
/// </summary>
public static class FiniteCheck
{
    const int ExponentMask = 0x7F80_0000;

    /// <summary>Index of the first NaN or ±Inf in <paramref name="values"/>, or -1. A float is not finite exactly when
    /// its 8 exponent bits are all ones, so the scan is an AND and a compare per SIMD lane.</summary>
    public static long FirstNonFinite(ReadOnlySpan<float> values)
    {
        var bits = MemoryMarshal.Cast<float, int>(values);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var mask = new Vector<int>(ExponentMask);
            // Stops at the first vector holding a bad lane; the scalar loop below finds the lane.
            for (; i <= bits.Length - Vector<int>.Count; i += Vector<int>.Count)
                if (Vector.EqualsAny(new Vector<int>(bits[i..]) & mask, mask)) break;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & ExponentMask) == ExponentMask) return i;
        return -1;
    }

    /// <summary>Throws "FILE: tensor 'KEY': holds NaN at [i, j, ...] (element N); weights must be finite" when a value is not finite.</summary>
    public static void Require(string file, string key, ReadOnlySpan<float> values, IReadOnlyList<long>? shape = null)
    {
        if (Problem(values, shape) is { } why) throw new TensorFileException(file, key, why);
    }

    /// <summary>"holds NaN at [i, j, ...] (element N); weights must be finite", or null when every value is finite.</summary>
    public static string? Problem(ReadOnlySpan<float> values, IReadOnlyList<long>? shape = null)
    {
        long at = FirstNonFinite(values);
        if (at < 0) return null;
        float bad = values[(int)at];
        string what = float.IsNaN(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf";
        string where = shape is { Count: > 1 } ? $"[{string.Join(", ", Unravel(at, shape))}] (element {at})" : $"element {at}";
        return $"holds {what} at {where}; weights must be finite";
    }

    static long[] Unravel(long flat, IReadOnlyList<long> shape)
    {
        var index = new long[shape.Count];
        for (int d = shape.Count - 1; d >= 0; d--)
        {
            long n = Math.Max(1, shape[d]);
            index[d] = flat % n;
            flat /= n;
        }
        return index;
    }
}
