-- Display names of the sales channels; 'fax' has no sales.
select 'web' as channel, 'Online' as label, 1 as sort_order
union all
select 'shop', 'In store', 2
union all
select 'phone', 'By phone', 3
union all
select 'fax', 'By fax', 4
