using Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;
using OnnxType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Engine.Onnx;

/// <summary>
/// Typed reads of a node's attributes for the importer. An attribute of the wrong kind (a FLOAT where an INT is
/// read) is an <see cref="OnnxFormatException"/> naming the file, the node and the attribute. Attributes whose
/// type is UNDEFINED (IR version 1 files did not write it) are read by the field that holds a value.
/// Internal because the protobuf classes are.
/// </summary>
internal static class OnnxAttributes
{
    /// <summary>The names under which Constant (opset 12+) carries its value other than as a tensor.</summary>
    private static readonly string[] ConstantValueAttributes = ["value_float", "value_floats", "value_int", "value_ints"];

    public static long Int(NodeProto n, string name, long fallback)
    {
        var a = Find(n, name);
        if (a is null) return fallback;
        return KindOf(a) is AttributeType.Int or AttributeType.Undefined ? a.I : throw WrongKind(n, a, "INT");
    }

    public static float Float(NodeProto n, string name, float fallback)
    {
        var a = Find(n, name);
        if (a is null) return fallback;
        return KindOf(a) is AttributeType.Float or AttributeType.Undefined ? a.F : throw WrongKind(n, a, "FLOAT");
    }

    public static long[]? Ints(NodeProto n, string name)
    {
        var a = Find(n, name);
        if (a is null) return null;
        return KindOf(a) is AttributeType.Ints or AttributeType.Undefined ? [.. a.Ints] : throw WrongKind(n, a, "INTS");
    }

    /// <summary>A STRING attribute decoded as UTF-8 (invalid sequences become U+FFFD).</summary>
    public static string? String(NodeProto n, string name)
    {
        var a = Find(n, name);
        if (a is null) return null;
        return KindOf(a) is AttributeType.String or AttributeType.Undefined ? a.S.ToStringUtf8() : throw WrongKind(n, a, "STRING");
    }

    /// <summary>
    /// A TENSOR attribute, checked as an initializer is; FLOAT and INT attributes become scalar FLOAT and INT64
    /// tensors, FLOATS and INTS one-dimensional ones. On a Constant, <c>Tensor(n, "value")</c> also finds
    /// value_float, value_floats, value_int and value_ints. Null when the node has no such attribute.
    /// </summary>
    public static OnnxTensor? Tensor(NodeProto n, string name)
    {
        var a = Find(n, name);
        if (a is null && name == "value" && n.OpType == "Constant")
            foreach (string other in ConstantValueAttributes)
                if ((a = Find(n, other)) is not null) break;
        if (a is null) return null;

        var source = OnnxModel.SourceOf(n);
        string file = source?.File ?? "(in memory)";
        string subject = Subject(source?.Description ?? OnnxModel.Describe(n, -1), a.Name);
        TensorProto t;
        switch (KindOf(a))
        {
            case AttributeType.Tensor:
                t = a.T ?? throw new OnnxFormatException(file, subject, "is TENSOR but holds no tensor");
                break;
            case AttributeType.Float:
                t = new TensorProto { DataType = (int)OnnxType.Float, FloatData = { a.F } };
                break;
            case AttributeType.Floats:
                t = new TensorProto { DataType = (int)OnnxType.Float, Dims = { a.Floats.Count }, FloatData = { a.Floats } };
                break;
            case AttributeType.Int:
                t = new TensorProto { DataType = (int)OnnxType.Int64, Int64Data = { a.I } };
                break;
            case AttributeType.Ints:
                t = new TensorProto { DataType = (int)OnnxType.Int64, Dims = { a.Ints.Count }, Int64Data = { a.Ints } };
                break;
            default:
                throw WrongKind(n, a, "TENSOR, FLOAT(S) or INT(S)");
        }
        return OnnxTensor.Create(t, OnnxModel.TensorName(n, t), file, subject, source?.ExternalDirectory);
    }

    internal static string Subject(string nodeDescription, string attribute) =>
        $"{nodeDescription}: attribute {OnnxFormatException.Quote(attribute)}";

    private static AttributeProto? Find(NodeProto n, string name)
    {
        foreach (var a in n.Attribute)
            if (a.Name == name) return a;
        return null;
    }

    /// <summary>The declared type, or for an UNDEFINED one the field that holds a value (UNDEFINED again when all
    /// are empty or zero: then INT, FLOAT, INTS and STRING reads all see their zero value).</summary>
    private static AttributeType KindOf(AttributeProto a)
    {
        if (a.Type != AttributeType.Undefined) return a.Type;
        if (a.T is not null) return AttributeType.Tensor;
        if (a.G is not null) return AttributeType.Graph;
        if (a.Floats.Count > 0) return AttributeType.Floats;
        if (a.Ints.Count > 0) return AttributeType.Ints;
        if (a.Strings.Count > 0) return AttributeType.Strings;
        if (a.Tensors.Count > 0) return AttributeType.Tensors;
        if (!a.S.IsEmpty) return AttributeType.String;
        if (a.F != 0) return AttributeType.Float;
        if (a.I != 0) return AttributeType.Int;
        return AttributeType.Undefined;
    }

    private static OnnxFormatException WrongKind(NodeProto n, AttributeProto a, string expected)
    {
        var source = OnnxModel.SourceOf(n);
        return new OnnxFormatException(source?.File ?? "(in memory)", Subject(source?.Description ?? OnnxModel.Describe(n, -1), a.Name),
            $"is {KindName(KindOf(a))}, expected {expected}");
    }

    private static string KindName(AttributeType t) => t switch
    {
        AttributeType.SparseTensor => "SPARSE_TENSOR",
        AttributeType.SparseTensors => "SPARSE_TENSORS",
        AttributeType.TypeProto => "TYPE_PROTO",
        AttributeType.TypeProtos => "TYPE_PROTOS",
        _ => t.ToString().ToUpperInvariant(),
    };
}
