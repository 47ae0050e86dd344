using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Tp7.Cli;

/// <summary>
/// Checks of single option values that run while the command line is parsed, so a bad value fails at once, before a
/// dataset is listed or a weight is read, with a message in the CLI's own words ("--C must be ...", never an internal
/// name). Program.cs prints parse errors as one line each. Checks that need several options or a file belong in the
/// verb, still before any long work.
/// </summary>
static class OptionChecks
{
    /// <summary>The value must be at least <paramref name="min"/> (e.g. --batch 1, --top 1).</summary>
    public static Option<int> AtLeast(this Option<int> option, int min)
    {
        option.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v < min) r.AddError($"{option.Name} must be at least {min}, got {v}");
        });
        return option;
    }

    /// <summary>When given, the value must be at least <paramref name="min"/>.</summary>
    public static Option<int?> AtLeast(this Option<int?> option, int min)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is { } v && v < min) r.AddError($"{option.Name} must be at least {min}, got {v}");
        });
        return option;
    }

    /// <summary>The value must be a positive finite number (e.g. --C, --lr, --tol).</summary>
    public static Option<double> Positive(this Option<double> option)
    {
        option.Validators.Add(r =>
        {
            double v = r.GetValueOrDefault<double>();
            if (!(v > 0) || !double.IsFinite(v)) r.AddError($"{option.Name} must be a positive number, got {Format(v)}");
        });
        return option;
    }

    /// <summary>The value must be a finite number of at least <paramref name="min"/> (e.g. --weight-decay 0).</summary>
    public static Option<double> AtLeast(this Option<double> option, double min)
    {
        option.Validators.Add(r =>
        {
            double v = r.GetValueOrDefault<double>();
            if (!(v >= min) || !double.IsFinite(v)) r.AddError($"{option.Name} must be a number of at least {Format(min)}, got {Format(v)}");
        });
        return option;
    }

    /// <summary>When given, the value is a shard INDEX/COUNT with 0 &lt;= INDEX &lt; COUNT (e.g. --shard 2/8).</summary>
    public static Option<string?> ShardSpec(this Option<string?> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } text && Tp7.Engine.Features.Shard.TryParse(text, out var why) is null) r.AddError($"{option.Name}: {why}");
        });
        return option;
    }

    /// <summary>
    /// Positive numbers, either a comma list ("0.01,0.1,1") or LO:HI:N, N values log-spaced from LO to HI inclusive
    /// as numpy.logspace(log10(LO), log10(HI), N) spaces them (N = 1 gives LO). The option takes exactly one token.
    /// </summary>
    public static Option<double[]> PositiveListOrLogRange(this Option<double[]> option)
    {
        option.Arity = ArgumentArity.ExactlyOne;
        option.CustomParser = r =>
        {
            string text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (ParseListOrLogRange(text, out var values) is { } why) r.AddError($"{option.Name}: {why}");
            return values;
        };
        return option;
    }

    /// <summary>The numbers of <paramref name="text"/> (see <see cref="PositiveListOrLogRange"/>), or why not.</summary>
    public static string? ParseListOrLogRange(string text, out double[] values)
    {
        values = [];
        static bool Number(string s, out double v) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v) && double.IsFinite(v);
        var range = text.Split(':', StringSplitOptions.TrimEntries);
        if (range.Length == 3)
        {
            if (!Number(range[0], out double lo) || !(lo > 0)) return $"'{range[0]}' in '{text}' is not a positive number (LO:HI:N, e.g. 1e-3:1e2:12)";
            if (!Number(range[1], out double hi) || !(hi > 0)) return $"'{range[1]}' in '{text}' is not a positive number (LO:HI:N, e.g. 1e-3:1e2:12)";
            if (!int.TryParse(range[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < 1)
                return $"'{range[2]}' in '{text}' is not a count of at least 1 (LO:HI:N, e.g. 1e-3:1e2:12)";
            if (n > 1 && !(hi > lo)) return $"'{text}': LO must be below HI (LO:HI:N, e.g. 1e-3:1e2:12)";
            // numpy: y = arange(N) * ((b - a) / (N - 1)) + a with the last set to b exactly, then 10 ** y.
            double a = Math.Log10(lo), b = Math.Log10(hi), step = n > 1 ? (b - a) / (n - 1) : 0;
            values = new double[n];
            for (int i = 0; i < n; i++) values[i] = i == 0 ? lo : i == n - 1 ? hi : Math.Pow(10, i * step + a);
            return null;
        }
        if (range.Length != 1) return $"'{text}' is neither a comma list of numbers nor LO:HI:N (e.g. 1e-3:1e2:12)";
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        values = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!Number(parts[i], out values[i]) || !(values[i] > 0))
            {
                values = [];
                return parts[i].Length == 0 ? $"'{text}' has an empty value" : $"'{parts[i]}' is not a positive number";
            }
        return null;
    }

    /// <summary>A comma list of sizes: positive integers, and 'none' (or 0) for "no reduction", read as 0.</summary>
    public static Option<int[]> SizesOrNone(this Option<int[]> option)
    {
        option.Arity = ArgumentArity.ExactlyOne;
        option.CustomParser = r =>
        {
            string text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            var sizes = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
            {
                if (parts[i].Equals("none", StringComparison.OrdinalIgnoreCase)) continue;
                if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out sizes[i]) || sizes[i] < 0)
                {
                    r.AddError($"{option.Name}: '{parts[i]}' is neither 'none' nor a positive integer (e.g. none,32,64)");
                    return [];
                }
            }
            return sizes;
        };
        return option;
    }

    /// <summary>
    /// An output path (file or folder) the program can create: its nearest existing ancestor is a folder we can write
    /// in, and nothing on the way is a file. Nothing is created here; <see cref="CreateParent"/> and
    /// <see cref="CreateFolder"/> do that when the verb writes.
    /// </summary>
    /// <typeparam name="T">string or string? (an option with a default, or one that may be absent).</typeparam>
    public static Option<T> Writable<T>(this Option<T> option) where T : class?
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<T>() is string { Length: > 0 } path && WhyNotWritable(path) is { } why) r.AddError($"{option.Name}: {why}");
        });
        return option;
    }

    /// <summary>An input side for VGG16: at least <see cref="Tp7.Engine.Model.Vgg16Architecture.MinInputSize"/>.</summary>
    public static Option<int> Vgg16Size(this Option<int> option)
    {
        option.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v < Tp7.Engine.Model.Vgg16Architecture.MinInputSize) r.AddError(Tp7.Engine.Model.Vgg16Architecture.SizeTooSmall(v));
        });
        return option;
    }

    /// <summary>A comma-separated list of integers of at least 1 (e.g. bench's --batch 1,8,64).</summary>
    public static Option<string> PositiveIntegers(this Option<string> option)
    {
        option.Validators.Add(r =>
        {
            var text = r.GetValueOrDefault<string>() ?? "";
            var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (items.Length == 0) r.AddError($"{option.Name}: no value in '{text}' (e.g. 1,8,64)");
            foreach (var item in items)
                if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v < 1)
                {
                    r.AddError($"{option.Name}: '{item}' is not an integer of at least 1 (e.g. 1,8,64)");
                    break;
                }
        });
        return option;
    }

    /// <summary>The integers of a list <see cref="PositiveIntegers"/> checked.</summary>
    public static int[] Integers(string text)
        => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Why <paramref name="path"/> cannot be created or written, or null when it can.</summary>
    public static string? WhyNotWritable(string path)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { return $"{path}: not a valid path ({e.Message})"; }
        if (File.Exists(full) && (File.GetAttributes(full) & FileAttributes.ReadOnly) != 0) return $"{path}: the file is read-only";
        var dir = Directory.Exists(full) ? full : Path.GetDirectoryName(full);
        while (dir != null && !Directory.Exists(dir))
        {
            if (File.Exists(dir)) return $"{path}: {dir} is a file, not a folder";
            dir = Path.GetDirectoryName(dir);
        }
        if (dir == null) return $"{path}: no existing folder above it";
        var probe = Path.Combine(dir, $".tp7-write-test-{Environment.ProcessId}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
            return null;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return $"{path}: cannot write in {dir} ({e.Message.TrimEnd('.')})";
        }
    }

    /// <summary>
    /// Image files named on the command line: each must be a file; a folder or a missing path is refused before any
    /// model is loaded (a folder with the hint to give its files).
    /// </summary>
    public static void RequireImageFiles(IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            if (File.Exists(path)) continue;
            if (Directory.Exists(path)) throw new ArgumentException($"{path} is a folder; give image files (e.g. {Path.Combine(path, "*.jpg")})");
            throw new FileNotFoundException($"{path}: no such image file");
        }
    }

    /// <summary>Creates the folders above an output file; returns the path.</summary>
    public static string CreateParent(string file)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(file));
        if (dir != null) Directory.CreateDirectory(dir);
        return file;
    }

    /// <summary>Creates an output folder and the folders above it; returns the path.</summary>
    public static string CreateFolder(string folder)
    {
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>The first parse error of each option, as "tp7 VERB: message" lines (no help page: `--help` shows it).</summary>
    public static IEnumerable<string> ErrorLines(ParseResult parse)
    {
        string verb = VerbPath(parse.CommandResult);
        foreach (var e in parse.Errors) yield return $"{verb}: {Plain(e.Message.ReplaceLineEndings(" "))}";
    }

    internal static string VerbPath(CommandResult? result)
    {
        var names = new List<string>();
        for (var r = result; r != null; r = r.Parent as CommandResult) names.Insert(0, r.Command.Name);
        if (names.Count > 0) names[0] = "tp7";
        return string.Join(' ', names);
    }

    /// <summary>The parser's messages name .NET types ("expected type 'System.Int32'"); say what a user types instead.</summary>
    static string Plain(string message)
    {
        foreach (var (type, words) in new[] { ("System.Int32", "an integer"), ("System.Nullable`1[System.Int32]", "an integer"), ("System.Double", "a number"),
                     ("System.Nullable`1[System.Double]", "a number"), ("System.Single", "a number"), ("System.Int64", "an integer") })
            message = message.Replace($"as expected type '{type}'", $"as {words}");
        return message;
    }

    static string Format(double v) => v.ToString("g", CultureInfo.InvariantCulture);
}
