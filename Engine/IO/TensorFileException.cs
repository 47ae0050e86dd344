using System.Text;

namespace Tp7.Engine.IO;

/// <summary>
/// A tensor file (safetensors, npy, reference file) is unreadable or does not match what the caller expects.
/// The message is one line: "&lt;path&gt;: tensor '&lt;key&gt;': &lt;what is wrong&gt;" or "&lt;path&gt;: &lt;what is wrong&gt;",
/// so the CLI can print it as is.
/// </summary>
public sealed class TensorFileException : Exception
{
    /// <summary>The file as the caller named it.</summary>
    public string FilePath { get; }

    /// <summary>The tensor the problem is about, or null when it concerns the whole file.</summary>
    public string? Key { get; }

    public TensorFileException(string path, string? key, string problem, Exception? inner = null)
        : base(Format(path, key, problem), inner)
    {
        FilePath = path;
        Key = key;
    }

    public TensorFileException(string path, string problem, Exception? inner = null)
        : this(path, null, problem, inner) { }

    private static string Format(string path, string? key, string problem)
    {
        string text = key is null ? $"{path}: {problem}" : $"{path}: tensor {Quote(key)}: {problem}";
        return OneLine(text);
    }

    /// <summary>
    /// Quotes a key (or any name read from a file) for a message: control characters escaped, very long names
    /// cut, so a hostile file cannot break the one-line message or flood the terminal.
    /// </summary>
    public static string Quote(string name, int maxChars = 160)
    {
        var sb = new StringBuilder(Math.Min(name.Length, maxChars) + 8);
        sb.Append('\'');
        int n = Math.Min(name.Length, maxChars);
        for (int i = 0; i < n; i++)
        {
            char c = name[i];
            if (char.IsControl(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (name.Length > maxChars) sb.Append($"…(+{name.Length - maxChars} chars)");
        sb.Append('\'');
        return sb.ToString();
    }

    private static string OneLine(string text)
    {
        if (text.AsSpan().IndexOfAny('\r', '\n') < 0) return text;
        return text.Replace("\r\n", " ").Replace('\n', ' ').Replace('\r', ' ');
    }
}
