using Tp7.Engine.IO;

namespace Tp7.Engine.Onnx;

/// <summary>
/// An .onnx file is unreadable, hostile, or outside what this engine reads. The message is one line,
/// "&lt;file&gt;: &lt;subject&gt;: &lt;what is wrong&gt;" (subject e.g. "node 'conv1' (Conv)", "tensor 'W'", "input 'x'")
/// or "&lt;file&gt;: &lt;what is wrong&gt;" when it concerns the whole file, so the CLI can print it as is.
/// </summary>
public sealed class OnnxFormatException : Exception
{
    /// <summary>The file as the caller named it.</summary>
    public string FilePath { get; }

    /// <summary>What the problem is about ("node 'conv1' (Conv)", "tensor 'W'", ...), or null for the whole file.</summary>
    public string? Subject { get; }

    public OnnxFormatException(string path, string? subject, string problem, Exception? inner = null)
        : base(Format(path, subject, problem), inner)
    {
        FilePath = path;
        Subject = subject;
    }

    public OnnxFormatException(string path, string problem, Exception? inner = null)
        : this(path, null, problem, inner) { }

    /// <summary>A name read from the file, quoted for a message (control characters escaped, long names cut).</summary>
    internal static string Quote(string name) => TensorFileException.Quote(name);

    private static string Format(string path, string? subject, string problem)
    {
        string text = subject is null ? $"{path}: {problem}" : $"{path}: {subject}: {problem}";
        return text.AsSpan().IndexOfAny('\r', '\n') < 0 ? text : text.Replace("\r\n", " ").Replace('\n', ' ').Replace('\r', ' ');
    }
}
