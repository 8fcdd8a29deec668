namespace Plover.AbiGen;

// What the generator reads out of plover_abi.h, already in C# terms. Line is the declaration's line in the
// header, written beside each generated member so that a reader finds the comment there.

/// <summary>A #define or an anonymous enum's constant: a const of PloverAbi.</summary>
internal sealed record Constant(string CName, string Name, string Type, string Value, uint Line);

/// <summary>A named enum: a C# enum.</summary>
internal sealed record EnumDef(string Name, string Underlying, List<(string Name, long Value, uint Line)> Members, uint Line);

/// <summary>A field; Declaration is what follows "public " (e.g. "byte* name" or "fixed byte mac[6]").</summary>
internal sealed record Field(string Name, string Declaration, bool IsFixedBuffer, uint Line);

/// <summary>A struct or union. LayoutKey is the C name abi_layout_test asks for ("PloverNic", "struct iovec").</summary>
internal sealed record StructDef(string LayoutKey, string Name, bool IsUnion, List<Field> Fields, long Size, uint Line, bool FromHeader);

/// <summary>A typedef of a function pointer: a C# using alias of the delegate* type.</summary>
internal sealed record FunctionPointer(string Name, string Type, uint Line);

internal sealed class HeaderModel
{
    public List<Constant> Constants { get; } = [];
    public List<EnumDef> Enums { get; } = [];
    public List<StructDef> Structs { get; } = [];
    public List<FunctionPointer> FunctionPointers { get; } = [];
}
