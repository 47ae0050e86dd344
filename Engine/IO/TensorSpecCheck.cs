namespace Tp7.Engine.IO;

/// <summary>Checks a weights file against a model's expected parameter list before anything is loaded.</summary>
public static class TensorSpecCheck
{
    /// <summary>
    /// Returns when every expected tensor is present with its shape and a float dtype and the file holds nothing
    /// else. Otherwise throws one <see cref="TensorFileException"/> whose message lists every problem:
    /// "missing 'k'", "unexpected 'k'", "'k': expected [4096, 25088], got [4096, 9216]", "'k': dtype I64 is not a float type".
    /// </summary>
    public static void Verify(SafeTensorsFile file, IReadOnlyList<(string Key, long[] Shape)> expected)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(expected);
        var problems = new List<string>();
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, shape) in expected)
        {
            if (!wanted.Add(key)) throw new ArgumentException($"expected tensor {TensorFileException.Quote(key)} is listed twice", nameof(expected));
            if (!file.Contains(key))
            {
                problems.Add($"missing {TensorFileException.Quote(key)}");
                continue;
            }
            var info = file.Info(key);
            if (!info.Shape.SequenceEqual(shape))
                problems.Add($"{TensorFileException.Quote(key)}: expected {TensorInfo.FormatShape(shape)}, got {info.ShapeText}");
            if (!DTypes.IsFloat(info.DType))
                problems.Add($"{TensorFileException.Quote(key)}: dtype {info.DType} is not a float type (F32, F16, BF16, F64)");
        }
        foreach (var t in file.Tensors)
            if (!wanted.Contains(t.Key)) problems.Add($"unexpected {TensorFileException.Quote(t.Key)}");
        if (problems.Count == 0) return;
        string noun = problems.Count == 1 ? "1 problem" : $"{problems.Count} problems";
        throw new TensorFileException(file.Path, $"does not match the expected tensors ({noun}): {string.Join("; ", problems)}");
    }
}
